"""CHGNet (Deng et al. 2023) as a `flax.linen` module over `CrystalGraph`.

The same function as the PyTorch ``chgnet`` package: atom embedding, Bessel bases with a
polynomial envelope on undirected bonds, Fourier angle bases, ``n_conv`` atom convolutions
interleaved with ``n_conv - 1`` bond convolutions and angle updates, magnetic moments after the
second-to-last atom convolution, and per-atom energies summed per structure.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from equijax.graphs.crystal_graph import CrystalGraph, edge_vectors, graph_index
from equijax.models.chgnet.config import CHGNetConfig
from equijax.models.chgnet.direct import CHGNetDirectHeads, LearnedEnergies
from equijax.models.chgnet.geometry import pair_lengths
from equijax.models.chgnet.lean import lean_energy, lean_supported
from equijax.nn.chgnet import AngleUpdate, AtomConv, BondConv
from equijax.nn.radial import FourierAngle, RadialBessel, angle_between
from equijax.nn.readout import MAX_ELEMENTS, AtomRef, SiteEnergies, SiteMagmoms
from equijax.nn.remat import remat_call
from equijax.typing import Array, AtomVectors, GraphTensors


class CHGNet(nn.Module):
    """CHGNet over a (padded, batched) `CrystalGraph`.

    Call with the graph and, optionally, positions (N, 3) Å and cells (G, 3, 3) Å that replace the
    graph's (the potential passes strained ones to get forces and stress by autodiff).

    Returns a dict:
        ``site_energies`` (N,) eV, the learned per-atom energies;
        ``energy`` (G,) eV, their sum per structure (without the composition reference);
        ``atomref`` (N,) eV, per-atom composition reference (zeros without a composition model);
        ``magmoms`` (N,) μB (zeros when ``n_conv == 1``);
        with ``config.forces == "direct"`` also ``forces`` (N, 3) eV/Å and ``stress``
        (G, 3, 3) GPa from `DirectHeads` (no derivatives; `equijax.potential` uses them as is).
    """

    config: CHGNetConfig = CHGNetConfig()

    @nn.compact
    def __call__(
        self,
        graph: CrystalGraph,
        positions: AtomVectors | None = None,
        cell: GraphTensors | None = None,
    ) -> dict[str, Array]:
        cfg = self.config
        atoms, bonds = graph.atoms, graph.bonds
        positions = atoms.nodes["positions"] if positions is None else positions
        cell = atoms.globals["cell"] if cell is None else cell
        if cfg.lean_inference and lean_supported(cfg) and not self.is_initializing():
            # the memory-lean mode of large structures: pieces, no pair-sized arrays
            return lean_energy(self.variables["params"], cfg, graph, positions, cell)
        n_atoms, n_edges, n_graphs = (
            positions.shape[0],
            atoms.senders.shape[0],
            atoms.n_node.shape[0],
        )
        n_pairs = (n_edges + 1) // 2

        vectors = edge_vectors(atoms, jnp, positions, cell)
        lengths = jnp.linalg.norm(vectors, axis=-1)
        pair = atoms.edges["pair"]
        undirected = pair_lengths(lengths, pair, n_pairs)

        rbf = dict(
            num_radial=cfg.num_radial, cutoff_coeff=cfg.cutoff_coeff, learnable=cfg.learnable_rbf
        )
        rbf_ag = RadialBessel(cutoff=cfg.atom_graph_cutoff, name="rbf_ag", **rbf)(undirected)
        # bypass: the bond-graph basis only for pairs in the bond graph (bonds < 3 Å, about 1/8 of
        # the 6 Å pairs); the other pairs' weights are exactly 0 (the basis vanishes beyond the
        # cutoff) and are never read. Padding bond nodes repeat a pair: the same value is written.
        bond_pair = bonds.nodes["pair"]
        rbf_bg = RadialBessel(cutoff=cfg.bond_graph_cutoff, name="rbf_bg", **rbf)(
            undirected[bond_pair]
        )
        embedding = self.param(
            "atom_embedding", nn.initializers.normal(1.0), (MAX_ELEMENTS, cfg.atom_fea_dim)
        )
        atom_feas = jnp.take(embedding, atoms.nodes["numbers"] - 1, axis=0, mode="clip")
        bond_feas = nn.Dense(cfg.bond_fea_dim, use_bias=False, name="bond_embedding")(rbf_ag)
        weights_ag = nn.Dense(cfg.atom_fea_dim, use_bias=False, name="bond_weights_ag")(rbf_ag)
        weights_bg = (
            jnp.zeros((n_pairs, cfg.bond_fea_dim), rbf_bg.dtype)
            .at[bond_pair]
            .set(nn.Dense(cfg.bond_fea_dim, use_bias=False, name="bond_weights_bg")(rbf_bg))
        )

        unit = vectors / lengths[:, None]
        unit_ij, unit_ik = unit[bonds.edges["edge_ij"]], unit[bonds.edges["edge_ik"]]
        angles = angle_between(unit_ij, unit_ik)
        angle_basis = FourierAngle(cfg.num_angular, cfg.learnable_rbf, name="angle_basis")(angles)
        angle_feas = nn.Dense(cfg.angle_fea_dim, use_bias=False, name="angle_embedding")(
            angle_basis
        )
        center = bonds.edges["center"]
        pair_i = bonds.nodes["pair"][bonds.receivers]
        pair_j = bonds.nodes["pair"][bonds.senders]

        conv = dict(
            act=cfg.non_linearity,
            gated_norm=cfg.gMLP_norm,
            norm=cfg.conv_norm,
            factorized=cfg.factorized_messages,
            fused_gates=cfg.fused_gates,
            chunk=cfg.lean_chunk if cfg.lean_inference else 0,
        )
        # remat: direct heads (first-order training) recompute each block once its cotangent
        # exists (remat_call: about 3x less memory on CPU, and no reliance on optimization
        # barriers, which XLA:CPU drops); conservative forces keep jax.checkpoint, since
        # recomputing inside the forces' derivative only adds to the second derivative's memory
        lean = cfg.lean_inference or (cfg.remat and cfg.forces == "direct")
        block = remat_call if lean else (lambda module, *args: module(*args))
        checkpointed = cfg.remat and cfg.forces == "conservative" and not lean
        atom_conv_cls, bond_conv_cls, angle_update_cls = (
            (nn.remat(AtomConv), nn.remat(BondConv), nn.remat(AngleUpdate))
            if checkpointed
            else (AtomConv, BondConv, AngleUpdate)
        )
        magmoms = jnp.zeros_like(positions[:, 0])
        for i in range(cfg.n_conv):
            atom_feas = block(
                atom_conv_cls(
                    cfg.atom_conv_hidden_dim,
                    out_bias=cfg.mlp_out_bias,
                    name=f"atom_conv_{i}",
                    **conv,
                ),
                atom_feas,
                bond_feas,
                weights_ag,
                atoms.receivers,
                atoms.senders,
                pair,
            )
            if i == cfg.n_conv - 1:
                break
            if cfg.update_bond:
                bond_feas = block(
                    bond_conv_cls(
                        cfg.bond_conv_hidden_dim,
                        out_bias=cfg.mlp_out_bias,
                        name=f"bond_conv_{i}",
                        **conv,
                    ),
                    atom_feas,
                    bond_feas,
                    weights_bg,
                    angle_feas,
                    center,
                    pair_i,
                    pair_j,
                )
                if cfg.update_angle:
                    # the last update's output is unused unless a direct head or the learned
                    # three-body energy reads it: a plain call, which XLA removes under jit (a
                    # rematerialised one would stay)
                    unused = (
                        i == cfg.n_conv - 2
                        and not cfg.direct_angle_energy
                        and not (
                            cfg.forces == "direct"
                            and (cfg.direct_angle_stress or cfg.direct_angle_forces)
                        )
                    )
                    update = angle_update_cls(
                        cfg.angle_layer_hidden_dim, name=f"angle_update_{i}", **conv
                    )
                    inputs = (atom_feas, bond_feas, angle_feas, center, pair_i, pair_j)
                    angle_feas = update(*inputs) if unused else block(update, *inputs)
            if i == cfg.n_conv - 2:
                magmoms = SiteMagmoms(name="magmom")(atom_feas)

        site_energies = SiteEnergies(
            cfg.mlp_hidden_dims, cfg.non_linearity, cfg.readout_norm, name="energy_readout"
        )(atom_feas)
        graph_of_atom = graph_index(atoms.n_node, n_atoms)
        energy = jax.ops.segment_sum(
            site_energies, graph_of_atom, n_graphs, indices_are_sorted=True
        )
        atomref = (
            AtomRef(name="atomref")(atoms.nodes["numbers"])
            if cfg.composition_model
            else jnp.zeros_like(positions[:, 0])
        )
        out = {
            "site_energies": site_energies,
            "energy": energy,
            "atomref": atomref,
            "magmoms": magmoms,
        }
        energy_gradient = None
        if cfg.direct_pair_energy or cfg.direct_angle_energy:
            learned = LearnedEnergies(cfg)
            nn.share_scope(self, learned)  # its params keep their names at CHGNet's top level
            sites, energy_gradient = learned(
                graph, atom_feas, bond_feas, angle_feas, vectors, undirected
            )
            out["site_energies"] = site_energies + sites
            out["energy"] = energy + jax.ops.segment_sum(
                sites, graph_of_atom, n_graphs, indices_are_sorted=True
            )
        if cfg.forces == "direct":
            heads = CHGNetDirectHeads(cfg)
            nn.share_scope(self, heads)
            out["forces"], out["stress"] = heads(
                graph, atom_feas, bond_feas, angle_feas, vectors, energy_gradient
            )
        return out
