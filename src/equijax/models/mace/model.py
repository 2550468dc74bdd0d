"""MACE assembled from equijax layers, in mace-torch's order.

Per layer: an interaction block (a linear map "up", the "uvu" convolution of `equijax.nn.uvu`
weighted by a radial MLP of the enveloped Bessel basis and divided by ``avg_num_neighbors``, a
linear map, and an element-dependent linear map: mace's "skip_tp", applied to the message in the
first block type and to the layer's input, as the residual, in the other); then the product
basis (the symmetric contraction of `equijax.nn.symmetric_contraction`, a linear map, plus the
residual). Each layer's scalars give a site energy (a linear readout; an MLP in the last layer).
Site energies are scaled and shifted (ScaleShiftMACE); the per-element E0s are the ``atomref``.
"""

from __future__ import annotations

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from equijax.graphs.crystal_graph import CrystalGraph, graph_index, masked_edge_vectors
from equijax.models.mace.config import MACEConfig
from equijax.nn.fully_connected import FullyConnectedNet
from equijax.nn.normalized_activation import normalized_activation
from equijax.nn.radial import polynomial_cutoff
from equijax.nn.readout import AtomRef
from equijax.nn.symmetric_contraction import (
    cg_contraction,
    gaunt_grid_contraction,
    gaunt_lmax,
    num_couplings,
)
from equijax.nn.uvu import uvu_convolution, uvu_irreps_out, uvu_num_weights, uvu_paths
from equijax.typing import Array, AtomVectors, GraphTensors

RESIDUAL = "RealAgnosticResidualInteractionBlock"


def mace_bessel(r: jax.Array, r_max: float, num_basis: int) -> jax.Array:
    """``sqrt(2 / r_max) sin(n π r / r_max) / r``, n = 1..num_basis: (E,) Å -> (E, num_basis)."""
    n = jnp.arange(1, num_basis + 1, dtype=r.dtype)
    return np.sqrt(2.0 / r_max) * jnp.sin(n * (np.pi / r_max) * r[:, None]) / r[:, None]


def element_linear_weights(irreps_in, irreps_out) -> list[tuple[int, int]]:
    """The (input block, output block) pairs of equal irreps, in e3nn's instruction order."""
    irreps_in, irreps_out = e3nn.Irreps(irreps_in), e3nn.Irreps(irreps_out)
    return [
        (i, o)
        for i, (_, ir_in) in enumerate(irreps_in)
        for o, (_, ir_out) in enumerate(irreps_out)
        if ir_in == ir_out
    ]


class ElementLinear(nn.Module):
    """A linear map whose weights depend on the atom's element: mace's ``skip_tp``, e3nn's
    fully connected product of the features with the element one-hot.

    Params ``w{i}_{o}`` (mul_in, num_elements, mul_out) per pair of equal input/output blocks
    (torch's weight layout); output block ``o`` is divided by ``sqrt(Σ mul_in · num_elements)``.
    Call: ``(x (N, irreps_in), types (N,) int)`` -> (N, irreps_out).
    """

    irreps_out: str
    num_elements: int

    @nn.compact
    def __call__(self, x: e3nn.IrrepsArray, types: jax.Array) -> e3nn.IrrepsArray:
        irreps_out = e3nn.Irreps(self.irreps_out)
        pairs = element_linear_weights(x.irreps, irreps_out)
        blocks = []
        for o, (mul_out, ir_out) in enumerate(irreps_out):
            mine = [(i, oo) for i, oo in pairs if oo == o]
            fan_in = sum(x.irreps[i].mul for i, _ in mine) * self.num_elements
            total = jnp.zeros(x.shape[:-1] + (mul_out, ir_out.dim), x.dtype)
            for i, _ in mine:
                mul_in = x.irreps[i].mul
                w = self.param(
                    f"w{i}_{o}", nn.initializers.normal(1.0), (mul_in, self.num_elements, mul_out)
                )
                per_atom = jnp.moveaxis(w.astype(x.dtype)[:, types, :], 1, 0)  # (N, u, w)
                if x.chunks[i] is not None:
                    total = total + jnp.einsum("nui,nuw->nwi", x.chunks[i], per_atom)
            blocks.append(total / np.sqrt(max(fan_in, 1)))
        return e3nn.from_chunks(irreps_out, blocks, x.shape[:-1], x.dtype)


class Interaction(nn.Module):
    """A mace interaction block: (h, types, sh, basis) -> (message (N, interaction irreps),
    residual (N, layer output irreps) or None)."""

    config: MACEConfig
    layer: int

    @nn.compact
    def __call__(self, h, types, sh, basis, senders, receivers, pair):
        cfg = self.config
        kind = cfg.interaction_first if self.layer == 0 else cfg.interaction
        n_el = len(cfg.atomic_numbers)
        target = cfg.interaction_irreps(self.layer)
        residual = None
        if kind == RESIDUAL:
            residual = ElementLinear(str(cfg.layer_irreps_out(self.layer)), n_el, name="skip_tp")(
                h, types
            )
        x = e3nn.flax.Linear(h.irreps, force_irreps_out=True, name="linear_up")(h)
        path_list = uvu_paths(x.irreps, sh.irreps, [ir for _, ir in target], cfg.tp)
        weights = FullyConnectedNet(
            (cfg.num_bessel, *cfg.radial_mlp, uvu_num_weights(path_list)),
            "silu",
            cfg.activation_scales,
            name="conv_tp_weights",
        )(basis)
        summed = uvu_convolution(
            x, sh, weights, senders, receivers, path_list, cfg.tp, cfg.edge_chunk, pair
        )
        message = e3nn.IrrepsArray(uvu_irreps_out(path_list).simplify(), summed)
        message = e3nn.flax.Linear(target, force_irreps_out=True, name="linear")(message)
        message = message / jnp.asarray(cfg.avg_num_neighbors, message.dtype)
        if kind != RESIDUAL:
            message = ElementLinear(str(target), n_el, name="skip_tp")(message, types)
        return message, residual


class ProductBasis(nn.Module):
    """mace's product basis: the symmetric contraction of the message, then a linear map, plus
    the residual. (N, interaction irreps) -> (N, layer output irreps)."""

    config: MACEConfig
    layer: int

    @nn.compact
    def __call__(self, message: e3nn.IrrepsArray, types: jax.Array, residual):
        cfg = self.config
        irreps_out = cfg.layer_irreps_out(self.layer)
        one_channel = e3nn.Irreps([ir for _, ir in message.irreps])
        correlation = cfg.layer_correlation(self.layer)
        n_el, channels = len(cfg.atomic_numbers), cfg.num_features
        x = message.mul_to_axis().array  # (N, C, d)
        if cfg.contraction == "cg":
            weights = {}
            for _, ir in irreps_out:
                for nu in range(1, correlation + 1):
                    p = num_couplings(one_channel, ir, nu)
                    if p == 0:
                        continue
                    w = self.param(
                        f"weights_{ir}_{nu}",
                        lambda key, shape, p=p: jax.random.normal(key, shape) / p,
                        (n_el, p, channels),
                    )
                    weights[(str(ir), nu)] = w[types]
            out = cg_contraction(x, weights, one_channel, irreps_out, correlation)
        else:
            lmax = gaunt_lmax(one_channel)
            ones = lambda key, shape: jnp.ones(shape)  # noqa: E731
            inputs = {
                nu: self.param(f"input_weights_{nu}", ones, (nu, lmax + 1, channels))
                for nu in range(1, correlation + 1)
            }
            outputs = {}
            for _, ir in irreps_out:
                for nu in range(1, correlation + 1):
                    w = self.param(
                        f"weights_{ir}_{nu}", nn.initializers.normal(1.0), (n_el, channels)
                    )
                    outputs[(str(ir), nu)] = w[types].astype(x.dtype)
            out = gaunt_grid_contraction(x, inputs, outputs, one_channel, irreps_out, correlation)
        out = e3nn.flax.Linear(irreps_out, force_irreps_out=True, name="linear")(out)
        return out if residual is None else out + residual


class MACE(nn.Module):
    """A MACE potential: energy as a sum of scaled and shifted site energies.

    Call: ``(graph: CrystalGraph, positions=None (N, 3) Å, cell=None (G, 3, 3) Å)`` ->
    ``energy`` (G,) eV without the E0s, ``site_energies`` (N,) eV, ``atomref`` (N,) eV (each
    atom's E0), ``magmoms`` (N,) zeros. Reads only the atom graph.
    """

    config: MACEConfig = MACEConfig()

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
        # padding edges: a unit vector, then a zero basis and a dropped receiver. mace's edge
        # vector points from the neighbour (sender) to the centre (receiver)
        vectors, real = masked_edge_vectors(atoms, positions, cell)
        vectors = -vectors
        numbers = atoms.nodes["numbers"]
        lengths = jnp.linalg.norm(vectors, axis=-1)
        sh = e3nn.spherical_harmonics(
            cfg.sh_irreps(), e3nn.IrrepsArray("1o", vectors), True, "component"
        )
        basis = mace_bessel(lengths, cfg.r_max, cfg.num_bessel)
        basis = basis * polynomial_cutoff(lengths, cfg.r_max, cfg.num_polynomial_cutoff)[:, None]
        basis = jnp.where(real[:, None], basis, 0.0)
        # opposite edges share a length and so the radial weights: computed once per pair
        pair, n_edges = atoms.edges["pair"], vectors.shape[0]
        basis = jax.ops.segment_sum(basis, pair, (n_edges + 1) // 2) / 2.0
        receivers = jnp.where(real, atoms.receivers, n_atoms)

        types = jnp.maximum(jnp.asarray(cfg.species_index())[numbers], 0)
        n_el, channels = len(cfg.atomic_numbers), cfg.num_features
        embedding = self.param("node_embedding", nn.initializers.normal(1.0), (n_el, channels))
        h = e3nn.IrrepsArray(
            f"{channels}x0e", embedding[types].astype(vectors.dtype) / np.sqrt(n_el)
        )
        site = jnp.zeros((n_atoms,), vectors.dtype)
        for layer in range(cfg.num_interactions):
            message, residual = Interaction(cfg, layer, name=f"interaction_{layer}")(
                h, types, sh, basis, atoms.senders, receivers, pair
            )
            h = ProductBasis(cfg, layer, name=f"product_{layer}")(message, types, residual)
            # mace: a linear readout per layer, an MLP in the last of two or more
            if layer < cfg.num_interactions - 1 or cfg.num_interactions == 1:
                energy = e3nn.flax.Linear("0e", name=f"readout_{layer}")(h)
            else:
                hidden = e3nn.flax.Linear(cfg.mlp_irreps, name=f"readout_{layer}_hidden")(h)
                act = normalized_activation(cfg.gate, cfg.activation_scales)
                hidden = e3nn.IrrepsArray(hidden.irreps, act(hidden.array))
                energy = e3nn.flax.Linear("0e", name=f"readout_{layer}")(hidden)
            site = site + energy.array[:, 0]
        site = cfg.atomic_inter_scale * site + cfg.atomic_inter_shift
        site = jnp.where(numbers > 0, site, 0.0)
        graph_of_atom = graph_index(atoms.n_node, n_atoms)
        energy = jax.ops.segment_sum(site, graph_of_atom, n_graphs, indices_are_sorted=True)
        atomref = AtomRef(name="atomref")(numbers).astype(site.dtype)
        zeros = jnp.zeros((n_atoms,), site.dtype)
        return {"energy": energy, "site_energies": site, "atomref": atomref, "magmoms": zeros}
