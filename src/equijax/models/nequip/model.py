"""NequIP / SevenNet assembled from equijax layers.

Per layer (sevenn's order): a self-connection map of the input, a linear map, the "uvu"
convolution (`equijax.nn.uvu`) weighted by a radial network of the edge embedding and divided by
the average-neighbour denominator, a linear map to the gate's input, the self-connection added,
then the gate. The readout maps the final scalars to an energy per atom, which is scaled and
shifted per element (the shift is the composition reference, ``atomref``).
"""

from __future__ import annotations

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from equijax.graphs.crystal_graph import CrystalGraph, graph_index, masked_edge_vectors
from equijax.models.nequip.config import NequIPConfig
from equijax.models.nequip.self_connection import S2MLPSelfConnection
from equijax.nn.fully_connected import FullyConnectedNet
from equijax.nn.gate import gate as apply_gate
from equijax.nn.gate import gate_input_irreps
from equijax.nn.normalized_activation import normalized_activation
from equijax.nn.radial import polynomial_cutoff
from equijax.nn.readout import MAX_ELEMENTS, AtomRef
from equijax.nn.spline_radial import SplineRadial, bspline_basis
from equijax.nn.uvu import uvu_convolution, uvu_irreps_out, uvu_num_weights, uvu_paths
from equijax.typing import Array, AtomVectors, GraphTensors


def sevenn_bessel(r: jax.Array, frequencies: jax.Array, cutoff: float) -> jax.Array:
    """``(2 / cutoff) sin(f r) / r``: (E,) Å -> (E, num_radial); ``f`` starts at n π / cutoff."""
    return (2.0 / cutoff) * jnp.sin(frequencies * r[:, None]) / r[:, None]


def xplor_cutoff(r: jax.Array, r_on: float, r_cut: float) -> jax.Array:
    """The XPLOR switching function: 1 below ``r_on``, a C¹ polynomial in r² down to 0 at
    ``r_cut`` (Å)."""
    r2, on2, cut2 = r * r, r_on * r_on, r_cut * r_cut
    switch = (cut2 - r2) ** 2 * (cut2 + 2 * r2 - 3 * on2) / (cut2 - on2) ** 3
    return jnp.where(r < r_on, 1.0, jnp.where(r < r_cut, switch, 0.0))


def envelope(config: NequIPConfig, r: jax.Array) -> jax.Array:
    """The config's smooth cutoff of the lengths ``r`` (E,)."""
    if config.cutoff_function == "XPLOR":
        return xplor_cutoff(r, config.cutoff_on, config.cutoff)
    return polynomial_cutoff(r, config.cutoff, config.poly_cut_p)


def conv_filter(config: NequIPConfig, layer: int) -> list[e3nn.Irrep]:
    """Output irreps the convolution of ``layer`` keeps: those of x ⊗ Y up to the layer's
    output lmax, and only even ones in the last layer (sevenn's ``infer_irreps_out``)."""
    irreps_in, irreps_out = config.layer_irreps()[layer], config.layer_irreps()[layer + 1]
    last = layer == config.num_layers - 1
    found = set()
    for _, ir1 in irreps_in:
        for _, ir2 in config.sh_irreps():
            for ir in ir1 * ir2:
                if ir.l <= irreps_out.lmax and (ir.p == 1 or not last):
                    found.add(ir)
    return sorted(found)


def gate(config: NequIPConfig, x: e3nn.IrrepsArray, irreps_out) -> e3nn.IrrepsArray:
    """The gate (`equijax.nn.gate`) of output ``irreps_out`` with the config's scaled
    activations."""
    act = lambda name: normalized_activation(name, config.activation_scales)  # noqa: E731
    return apply_gate(
        x,
        irreps_out,
        {1: act(config.act_scalar_even), -1: act(config.act_scalar_odd)},
        {1: act(config.act_gate_even), -1: act(config.act_gate_odd)},
    )


class RadialWeights(nn.Module):
    """(E, num_radial) edge embedding -> (E, features) path weights: sevenn's MLP, a linear map
    (Facet), or B-spline coefficients."""

    config: NequIPConfig
    features: int

    @nn.compact
    def __call__(self, basis: jax.Array) -> jax.Array:
        cfg = self.config
        if cfg.radial == "spline":
            return SplineRadial(self.features, cfg.num_radial, cfg.cutoff, name="spline")(
                None, basis=basis
            )
        hidden = cfg.radial_hidden if cfg.radial == "mlp" else ()
        return FullyConnectedNet(
            (cfg.num_radial, *hidden, self.features),
            cfg.act_radial,
            cfg.activation_scales,
            name="weight_nn",
        )(basis)


class Interaction(nn.Module):
    """One NequIP layer: (N, irreps[layer]) -> (N, irreps[layer + 1])."""

    config: NequIPConfig
    layer: int

    @nn.compact
    def __call__(self, x, sh, basis, senders, receivers, pair) -> e3nn.IrrepsArray:
        """``basis`` (P, num_radial) per pair of opposite edges, ``pair`` (E,) each edge's."""
        cfg = self.config
        irreps_out = cfg.layer_irreps()[self.layer + 1]
        gate_in = gate_input_irreps(irreps_out)
        if cfg.self_connection == "s2mlp":
            skip = S2MLPSelfConnection(cfg, gate_in, name="self_connection")(x)
        else:
            skip = e3nn.flax.Linear(gate_in, force_irreps_out=True, name="self_connection")(x)
        x = e3nn.flax.Linear(x.irreps, force_irreps_out=True, name="linear_1")(x)
        path_list = uvu_paths(x.irreps, sh.irreps, conv_filter(cfg, self.layer), cfg.tp)
        weights = RadialWeights(cfg, uvu_num_weights(path_list), name="radial")(basis)
        summed = uvu_convolution(
            x, sh, weights, senders, receivers, path_list, cfg.tp, cfg.edge_chunk, pair
        )
        summed = summed / jnp.asarray(cfg.denominator(self.layer), summed.dtype)
        summed = e3nn.IrrepsArray(uvu_irreps_out(path_list).simplify(), summed)
        x = e3nn.flax.Linear(gate_in, force_irreps_out=True, name="linear_2")(summed)
        return gate(cfg, x + skip, irreps_out)


class NequIP(nn.Module):
    """A NequIP / SevenNet potential: energy as a sum of scaled and shifted site energies.

    Call: ``(graph: CrystalGraph, positions=None (N, 3) Å, cell=None (G, 3, 3) Å)`` ->
    ``energy`` (G,) eV without the reference, ``site_energies`` (N,) eV, ``atomref`` (N,) eV
    (the per-element shift), ``magmoms`` (N,) zeros. Reads only the atom graph.
    """

    config: NequIPConfig = NequIPConfig()

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
        # padding edges: a unit vector, then a zero basis and no message
        vectors, real = masked_edge_vectors(atoms, positions, cell)
        numbers = atoms.nodes["numbers"]
        lengths = jnp.linalg.norm(vectors, axis=-1)
        sh = e3nn.spherical_harmonics(
            cfg.sh_irreps(),
            e3nn.IrrepsArray("1o" if cfg.is_parity else "1e", vectors),
            normalize=True,
            normalization="component",
        )
        if cfg.radial == "spline":
            basis = bspline_basis(lengths, cfg.num_radial, cfg.cutoff)
        else:
            init = np.pi * np.arange(1, cfg.num_radial + 1) / cfg.cutoff
            frequencies = self.param("bessel_frequencies", lambda _: jnp.asarray(init, jnp.float32))
            basis = sevenn_bessel(lengths, frequencies.astype(lengths.dtype), cfg.cutoff)
            basis = basis * envelope(cfg, lengths)[:, None]
        basis = jnp.where(real[:, None], basis, 0.0)
        # opposite edges share a length and so the radial weights: compute them once per pair
        pair, n_edges = atoms.edges["pair"], vectors.shape[0]
        basis = jax.ops.segment_sum(basis, pair, (n_edges + 1) // 2) / 2.0

        types = jnp.maximum(jnp.asarray(cfg.species_index())[numbers], 0)
        # padding edges deliver to a row segment_sum drops
        receivers = jnp.where(real, atoms.receivers, n_atoms)
        irreps = cfg.layer_irreps()
        n_types = len(cfg.chemical_species)
        table = self.param("embedding", nn.initializers.normal(1.0), (n_types, irreps[0].dim))
        h = e3nn.IrrepsArray(irreps[0], table[types].astype(vectors.dtype) / np.sqrt(n_types))
        for layer in range(cfg.num_layers):
            h = Interaction(cfg, layer, name=f"interaction_{layer}")(
                h, sh, basis, atoms.senders, receivers, pair
            )
        if cfg.readout == "collapsed":
            site = e3nn.flax.Linear("0e", name="readout")(h)
        else:
            hidden = e3nn.flax.Linear(f"{h.irreps.dim // 2}x0e", name="readout_hidden")(h)
            site = e3nn.flax.Linear("0e", name="readout_energy")(hidden)
        scale = self.param("energy_scale", nn.initializers.ones, (MAX_ELEMENTS,))
        site = site.array[:, 0] * jnp.take(scale, numbers - 1, mode="clip").astype(h.dtype)
        graph_of_atom = graph_index(atoms.n_node, n_atoms)
        energy = jax.ops.segment_sum(site, graph_of_atom, n_graphs, indices_are_sorted=True)
        atomref = AtomRef(name="atomref")(numbers).astype(site.dtype)
        zeros = jnp.zeros((n_atoms,), site.dtype)
        return {"energy": energy, "site_energies": site, "atomref": atomref, "magmoms": zeros}


def path_report(config: NequIPConfig) -> list[dict]:
    """Which of the Clebsch-Gordan convolution's couplings (SevenNet's paths) ``config.tp``
    realizes, per layer: ``{"layer", "paths": [(str, realized)], "realized", "total",
    "weights"}`` (weights: radial outputs per edge of the layer with this kind)."""
    from equijax.nn.tp import paths as kind_paths

    report = []
    for layer in range(config.num_layers):
        irreps_in = config.layer_irreps()[layer]
        keep = conv_filter(config, layer)
        cg = uvu_paths(irreps_in, config.sh_irreps(), keep, "cg")
        rows = []
        for p in cg:
            ir1, ir2 = irreps_in[p.i1].ir, config.sh_irreps()[p.i2].ir
            if config.tp == "cg":
                realized = True
            else:
                couplings = kind_paths(config.tp, f"1x{ir1}", f"1x{ir2}", [p.ir_out])
                realized = any(c.ir_out == p.ir_out for c in couplings)
            rows.append((f"{p.mul}x{ir1} x {ir2} -> {p.ir_out}", realized))
        own = uvu_paths(irreps_in, config.sh_irreps(), keep, config.tp)
        report.append(
            {
                "layer": layer,
                "paths": rows,
                "realized": sum(r for _, r in rows),
                "total": len(rows),
                "weights": uvu_num_weights(own),
            }
        )
    return report
