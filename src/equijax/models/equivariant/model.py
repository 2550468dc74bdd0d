"""An equivariant message-passing potential (NequIP/MACE-like) assembled from equijax layers.

Config values choose the pieces that Facet-style comparisons vary:

- ``tp``: "cg" | "gaunt_grid" | "gaunt_fourier" | "vector_gaunt" (`equijax.nn.tp`);
- ``radial``: "spline" (`SplineRadial`) | "bessel-mlp" (Bessel basis x envelope, then an MLP);
- ``self_interaction``: "linear" (e3nn Linear + gate) | "s2-mlp" (`S2MLP` on the parity-(-1)^l
  channels, linear on the others);
- ``parity``: "natural" (0e, 1o, 2e, ...) or "both" (adds 0o, 1e, 2o, ...; only then do the odd
  couplings of "cg" and "vector_gaunt" contribute).

The module follows `equijax.potential`'s model interface: ``(graph, positions, cell) ->
{"energy", "site_energies", "atomref", "magmoms"}``, so `predict_padded`, `Potential` and the ASE
calculator give conservative forces and stress from one gradient. Messages run on the atom graph
of a `CrystalGraph` (the bond graph is unused).
"""

from __future__ import annotations

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp

from equijax.graphs.crystal_graph import CrystalGraph, edge_vectors, graph_index
from equijax.models.equivariant.config import EquivariantConfig
from equijax.nn.direct_heads import DirectHeads
from equijax.nn.mlp import MLP
from equijax.nn.radial import bessel_basis, polynomial_cutoff
from equijax.nn.readout import MAX_ELEMENTS, AtomRef
from equijax.nn.s2 import S2MLP
from equijax.nn.spline_radial import SplineRadial, bspline_basis
from equijax.nn.tp import TensorProduct
from equijax.typing import Array, AtomVectors, GraphTensors


def radial_basis(config: EquivariantConfig, lengths: jax.Array) -> jax.Array:
    """(E, num_radial) basis of the edge lengths, computed once per graph for every layer:
    the B-spline design matrix, or Bessel functions times a smooth envelope."""
    if config.radial == "spline":
        return bspline_basis(lengths, config.num_radial, config.cutoff)
    frequencies = jnp.pi * jnp.arange(1, config.num_radial + 1, dtype=lengths.dtype)
    basis = bessel_basis(lengths, frequencies, config.cutoff)
    return basis * polynomial_cutoff(lengths, config.cutoff, 5)[:, None]


class RadialNetwork(nn.Module):
    """`radial_basis` (E, num_radial) -> (E, features): spline coefficients, or an MLP."""

    config: EquivariantConfig
    features: int

    @nn.compact
    def __call__(self, basis: jax.Array) -> jax.Array:
        cfg = self.config
        if cfg.radial == "spline":
            return SplineRadial(self.features, cfg.num_radial, cfg.cutoff)(None, basis=basis)
        return MLP(self.features, hidden=(cfg.radial_hidden,))(basis)


class Interaction(nn.Module):
    """One message-passing block: TP(h_sender, Y(r̂)) x radial weights, summed, self-interaction."""

    config: EquivariantConfig

    @nn.compact
    def __call__(self, h: e3nn.IrrepsArray, sh: e3nn.IrrepsArray, basis, senders, receivers):
        cfg = self.config
        hidden = cfg.hidden_irreps()
        messages = TensorProduct(kind=cfg.tp, irreps_out=hidden, weights="per_channel", name="tp")(
            h[senders], sh
        )
        n_blocks = len(messages.irreps)
        weights = RadialNetwork(cfg, n_blocks * cfg.channels, name="radial")(basis)
        weights = weights.reshape(weights.shape[:-1] + (n_blocks, cfg.channels))
        chunks = [c * w[..., None] for c, w in zip(messages.chunks, jnp.moveaxis(weights, -2, 0))]
        messages = e3nn.from_chunks(messages.irreps, chunks, messages.shape[:-1], messages.dtype)
        aggregated = e3nn.scatter_sum(messages, dst=receivers, output_size=h.shape[0])
        aggregated = aggregated / jnp.sqrt(cfg.avg_num_neighbors)
        skip = e3nn.flax.Linear(hidden, force_irreps_out=True, name="skip")(h)
        if cfg.self_interaction == "s2-mlp":
            mixed = e3nn.flax.Linear(hidden, force_irreps_out=True, name="mix")(aggregated)
            natural = mixed.filter(keep=[ir for _, ir in hidden if ir.p == (-1) ** ir.l])
            rest = mixed.filter(drop=[ir for _, ir in natural.irreps])
            grid = S2MLP(cfg.channels, hidden=2 * cfg.channels, name="s2mlp")(natural)
            out = e3nn.concatenate([grid, rest]).regroup() if rest.irreps else grid
            return skip + out
        non_scalars = [(mul, ir) for mul, ir in hidden if ir.l > 0]
        gates = sum(mul for mul, _ in non_scalars)
        scalars = [(mul, ir) for mul, ir in hidden if ir.l == 0]
        pre = e3nn.Irreps(scalars + ([(gates, "0e")] if gates else []) + non_scalars)
        gated = e3nn.gate(e3nn.flax.Linear(pre, force_irreps_out=True, name="mix")(aggregated))
        return skip + gated.regroup()


class VectorReadout(nn.Module):
    """(N, 3) per-atom vectors from the 1o features of ``h`` (a learned e3nn linear map), minus
    their mean per structure: equivariant, with zero net force.

    Call with ``h`` (N, irreps), ``graph_of_atom`` (N,) and the number of graphs."""

    @nn.compact
    def __call__(self, h: e3nn.IrrepsArray, graph_of_atom, n_graphs: int) -> jax.Array:
        # the caller shares its scope with this module: the map's params are its "force_readout"
        vectors = e3nn.flax.Linear("1x1o", name="force_readout")(h.filter(keep="1o")).array
        return _minus_structure_mean(vectors, graph_of_atom, n_graphs)


def _minus_structure_mean(vectors, graph_of_atom, n_graphs: int) -> jax.Array:
    count = jax.ops.segment_sum(jnp.ones_like(vectors[:, :1]), graph_of_atom, n_graphs)
    mean = jax.ops.segment_sum(vectors, graph_of_atom, n_graphs) / jnp.maximum(count, 1.0)
    return vectors - mean[graph_of_atom]


class EquivariantPotential(nn.Module):
    """Energy of each structure as a sum of site energies from an equivariant MPNN.

    Call: ``(graph: CrystalGraph, positions=None (N, 3) Å, cell=None (G, 3, 3) Å)`` ->
    ``energy`` (G,) eV without the reference, ``site_energies`` (N,), ``atomref`` (N,) per-atom
    reference energies (zeros without a composition model), ``magmoms`` (N,) zeros; with
    ``config.forces == "direct"`` also ``forces`` (N, 3) eV/Å (`DirectHeads` pair forces plus a
    linear readout of the 1o features, `VectorReadout`) and ``stress`` (G, 3, 3) GPa.
    """

    config: EquivariantConfig = EquivariantConfig()

    @nn.compact
    def __call__(
        self,
        graph: CrystalGraph,
        positions: AtomVectors | None = None,
        cell: GraphTensors | None = None,
    ) -> dict[str, Array]:
        cfg = self.config
        atoms = graph.atoms
        positions = atoms.nodes["positions"] if positions is None else positions
        cell = atoms.globals["cell"] if cell is None else cell
        n_atoms, n_graphs = positions.shape[0], atoms.n_node.shape[0]
        vectors = edge_vectors(atoms, jnp, positions, cell)
        lengths = jnp.linalg.norm(vectors, axis=-1)
        sh = e3nn.spherical_harmonics(
            e3nn.s2_irreps(cfg.lmax), vectors, normalize=True, normalization="component"
        )
        embedding = self.param(
            "species_embedding", nn.initializers.normal(1.0), (MAX_ELEMENTS, cfg.channels)
        )
        scalars = jnp.take(embedding, atoms.nodes["numbers"] - 1, axis=0, mode="clip")
        h = e3nn.IrrepsArray(f"{cfg.channels}x0e", scalars)
        h = e3nn.flax.Linear(cfg.hidden_irreps(), force_irreps_out=True, name="lift")(h)
        basis = radial_basis(cfg, lengths)
        for layer in range(cfg.num_layers):
            h = Interaction(cfg, name=f"interaction_{layer}")(
                h, sh, basis, atoms.senders, atoms.receivers
            )
        invariants = h.filter(keep="0e").array
        site = MLP(1, hidden=(cfg.channels,), zero_init_last=True, name="readout")(invariants)[:, 0]
        graph_of_atom = graph_index(atoms.n_node, n_atoms)
        energy = jax.ops.segment_sum(site, graph_of_atom, n_graphs, indices_are_sorted=True)
        zeros = jnp.zeros((n_atoms,), site.dtype)
        atomref = (
            AtomRef(name="atomref")(atoms.nodes["numbers"]) if cfg.composition_model else zeros
        )
        out = {"energy": energy, "site_energies": site, "atomref": atomref, "magmoms": zeros}
        if cfg.forces == "direct":
            pair, n_edges = atoms.edges["pair"], vectors.shape[0]
            n_pairs = (n_edges + 1) // 2
            pair_basis = jax.ops.segment_sum(basis, pair, n_pairs) / 2.0  # both directions agree
            graph_of_edge = graph_index(atoms.n_edge, n_edges)
            unit = vectors / jnp.where(lengths > 0, lengths, 1.0)[:, None]
            pair_forces, out["stress"] = DirectHeads(
                (cfg.channels,), stress=cfg.direct_stress, norm=cfg.direct_norm, name="direct_heads"
            )(
                pair_basis,
                invariants,
                atoms.senders,
                atoms.receivers,
                pair,
                unit,
                graph_of_edge,
                jnp.asarray(atoms.globals["volume"]).astype(unit.dtype),
                lengths,
            )
            readout = VectorReadout()
            nn.share_scope(self, readout)
            out["forces"] = pair_forces + readout(h, graph_of_atom, n_graphs)
        return out
