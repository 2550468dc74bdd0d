"""CHGNet's direct force and stress heads (``CHGNetConfig.forces="direct"``) and its learned
pair and three-body energies: the pair heads of `equijax.nn.direct_heads.DirectHeads` and the
optional terms over the bond graph's angles and pairs, read out of the final features. No
derivative of the network is taken.

The optional physical terms (three-body forces, learned pair and three-body energies) each give
every directed edge e a gradient g_e = ∂E/∂r_e (eV/Å); their forces push each edge's centre by
+g_e and its neighbour by −g_e (`edge_gradient_forces`), and with a virial ``direct_stress``
their virial (1/V) Σ r_e ⊗ g_e joins the stress (`edge_gradient_stress`). The learned energies
are energy terms: a conservative model keeps them (its forces differentiate them, features
included), and they read the trunk's features unscaled by ``direct_trunk_grad``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from equijax.graphs.crystal_graph import CrystalGraph, graph_index
from equijax.models.chgnet.config import CHGNetConfig
from equijax.nn.angle_energy import angle_energy
from equijax.nn.direct_heads import (
    DirectHeads,
    angle_edge_gradient,
    angle_gradients_on_edges,
    angle_stress,
    edge_gradient_forces,
    edge_gradient_stress,
    scale_gradient,
    symmetric_pair_features,
)
from equijax.nn.mlp import MLP
from equijax.nn.pair_energy import pair_energy


def _angle_inputs(graph: CrystalGraph, atom_feas, bond_feas, angle_feas):
    """(A, Fa + Fb + F) invariant features of each angle (its features, the sum of its two bonds'
    and its centre atom's) and the angle's (center, edge_ij, edge_ik) indices."""
    bonds = graph.bonds
    center = bonds.edges["center"]
    pair_i = bonds.nodes["pair"][bonds.receivers]
    pair_j = bonds.nodes["pair"][bonds.senders]
    features = jnp.concatenate(
        [angle_feas, bond_feas[pair_i] + bond_feas[pair_j], atom_feas[center]], axis=-1
    )
    return features, (center, bonds.edges["edge_ij"], bonds.edges["edge_ik"])


def _mlp(cfg, features, name: str, outputs: int):
    return MLP(
        outputs,
        hidden=cfg.direct_hidden_dims,
        act=cfg.non_linearity,
        zero_init_last=True,
        name=name,
    )(features)


class LearnedEnergies(nn.Module):
    """The learned pair and three-body energies ``config`` selects (``direct_pair_energy``,
    ``direct_angle_energy``).

    Call with the graph, the final (unscaled) features ``atom_feas`` (N, F), ``bond_feas``
    (P, Fb), ``angle_feas`` (A, Fa), the edge ``vectors`` (E, 3) Å and the undirected
    ``pair_lengths`` (P,) Å. Returns per-site energies (N,) eV and each directed edge's gradient
    ∂E/∂r_e (E, 3) eV/Å at fixed features (what `CHGNetDirectHeads` turns into forces and
    stress; unused, and removed by XLA, in a conservative model, whose forces differentiate
    everything). CHGNet shares its scope with this module, so the params keep CHGNet's names.
    """

    config: CHGNetConfig

    @nn.compact
    def __call__(
        self,
        graph: CrystalGraph,
        atom_feas,
        bond_feas,
        angle_feas,
        vectors: jax.Array,
        pair_lengths: jax.Array,
    ):
        cfg = self.config
        atoms = graph.atoms
        n_atoms, n_edges = atoms.nodes["numbers"].shape[0], vectors.shape[0]
        pair = atoms.edges["pair"]
        sites = jnp.zeros((n_atoms,), vectors.dtype)
        edge_gradient = jnp.zeros_like(vectors)
        if cfg.direct_pair_energy:
            unit = vectors / jnp.linalg.norm(vectors, axis=-1)[:, None]
            features = jnp.concatenate(
                [
                    bond_feas,
                    symmetric_pair_features(
                        atom_feas, atoms.senders, atoms.receivers, pair, pair_lengths.shape[0]
                    ),
                ],
                axis=-1,
            )
            energies, slopes = pair_energy(
                _mlp(cfg, features, "pair_energy_mlp", cfg.direct_pair_energy),
                pair_lengths,
                cfg.atom_graph_cutoff,
            )
            sites = sites + jax.ops.segment_sum(energies[pair] / 2.0, atoms.receivers, n_atoms)
            # each of a pair's two directed edges carries half its gradient u' r̂
            edge_gradient = edge_gradient + (slopes[pair] / 2.0)[:, None] * unit
        if cfg.direct_angle_energy:
            features, (center, edge_ij, edge_ik) = _angle_inputs(
                graph, atom_feas, bond_feas, angle_feas
            )
            energies, grad_ij, grad_ik = angle_energy(
                _mlp(cfg, features, "angle_energy_mlp", cfg.direct_angle_energy),
                vectors[edge_ij],
                vectors[edge_ik],
                cfg.bond_graph_cutoff,
            )
            sites = sites + jax.ops.segment_sum(energies, center, n_atoms)
            edge_gradient = edge_gradient + angle_gradients_on_edges(
                grad_ij, grad_ik, edge_ij, edge_ik, n_edges
            )
        return sites, edge_gradient


class CHGNetDirectHeads(nn.Module):
    """CHGNet's direct heads, as ``config`` selects them: forces (N, 3) eV/Å and stress
    (G, 3, 3) GPa, returned as a pair.

    Call with the graph, the final features ``atom_feas`` (N, F), ``bond_feas`` (P, Fb),
    ``angle_feas`` (A, Fa), the centre-to-neighbour ``vectors`` (E, 3) Å and
    ``energy_gradient`` (E, 3) eV/Å: the learned energies' edge gradients (`LearnedEnergies`),
    whose forces (and, with a virial ``direct_stress``, virial) join the heads'. CHGNet shares
    its scope with this module, so the params keep CHGNet's names.
    """

    config: CHGNetConfig

    @nn.compact
    def __call__(
        self,
        graph: CrystalGraph,
        atom_feas,
        bond_feas,
        angle_feas,
        vectors: jax.Array,
        energy_gradient: jax.Array | None = None,
    ):
        cfg = self.config
        atoms = graph.atoms
        n_atoms, n_edges, n_graphs = (
            atoms.nodes["numbers"].shape[0],
            vectors.shape[0],
            atoms.n_node.shape[0],
        )
        lengths = jnp.linalg.norm(vectors, axis=-1)
        unit = vectors / lengths[:, None]
        pair = atoms.edges["pair"]
        graph_of_edge = graph_index(atoms.n_edge, n_edges)
        volume = jnp.asarray(atoms.globals["volume"]).astype(unit.dtype)
        if cfg.direct_trunk_grad != 1.0:
            bond_feas = scale_gradient(bond_feas, cfg.direct_trunk_grad)
            atom_feas = scale_gradient(atom_feas, cfg.direct_trunk_grad)
            angle_feas = scale_gradient(angle_feas, cfg.direct_trunk_grad)
        forces, stress = DirectHeads(
            cfg.direct_hidden_dims,
            cfg.non_linearity,
            cfg.direct_stress,
            cfg.direct_norm,
            name="direct_heads",
        )(
            bond_feas,
            atom_feas,
            atoms.senders,
            atoms.receivers,
            pair,
            unit,
            graph_of_edge,
            volume,
            lengths,
        )
        edge_gradient = jnp.zeros_like(vectors) if energy_gradient is None else energy_gradient

        if cfg.direct_angle_stress or cfg.direct_angle_forces:
            features, (center, edge_ij, edge_ik) = _angle_inputs(
                graph, atom_feas, bond_feas, angle_feas
            )
            unit_ij, unit_ik = unit[edge_ij], unit[edge_ik]
            if cfg.direct_angle_stress:
                graph_of_angle = graph_index(graph.bonds.n_edge, center.shape[0])
                weights = _mlp(cfg, features, "angle_stress_mlp", 1)[:, 0] / cfg.direct_norm
                stress = stress + angle_stress(
                    weights, unit_ij, unit_ik, graph_of_angle, volume, n_graphs
                )
            if cfg.direct_angle_forces:  # the non-central gradients of an angle energy φ(cos θ)
                weights = _mlp(cfg, features, "angle_force_mlp", 1)[:, 0] / cfg.direct_norm
                edge_gradient = edge_gradient + angle_edge_gradient(
                    weights,
                    unit_ij,
                    unit_ik,
                    lengths[edge_ij],
                    lengths[edge_ik],
                    edge_ij,
                    edge_ik,
                    n_edges,
                )

        if energy_gradient is not None or cfg.direct_angle_forces:
            forces = forces + edge_gradient_forces(
                edge_gradient, atoms.senders, atoms.receivers, n_atoms
            )
            if cfg.direct_stress != "independent":  # the virial of these forces
                if cfg.direct_stress == "virial_detached":
                    edge_gradient = jax.lax.stop_gradient(edge_gradient)
                stress = stress + edge_gradient_stress(
                    edge_gradient, vectors, graph_of_edge, volume, n_graphs
                )
        return forces, stress
