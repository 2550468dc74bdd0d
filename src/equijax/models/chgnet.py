"""CHGNet (Deng et al. 2023) as a `flax.linen` module over `CrystalGraph`.

The same function as the PyTorch ``chgnet`` package: atom embedding, Bessel bases with a
polynomial envelope on undirected bonds, Fourier angle bases, ``n_conv`` atom convolutions
interleaved with ``n_conv - 1`` bond convolutions and angle updates, magnetic moments after the
second-to-last atom convolution, and per-atom energies summed per structure.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from equijax.graphs.crystal_graph import CrystalGraph, edge_vectors
from equijax.models.chgnet_direct import add_direct_heads, learned_energies
from equijax.nn.chgnet import AngleUpdate, AtomConv, BondConv
from equijax.nn.direct_heads import DIRECT_STRESS, check_direct_norm, valid_trunk_grad
from equijax.nn.mlp import hidden_layers
from equijax.nn.radial import FourierAngle, RadialBessel, angle_between
from equijax.nn.remat import remat_call
from equijax.nn.readout import MAX_ELEMENTS, AtomRef, SiteEnergies, SiteMagmoms


@dataclasses.dataclass(frozen=True)
class CHGNetConfig:
    """Hyperparameters, named as in ``chgnet.model.CHGNet`` (defaults: the 0.3.0 model)."""

    atom_fea_dim: int = 64
    bond_fea_dim: int = 64
    angle_fea_dim: int = 64
    num_radial: int = 31
    num_angular: int = 31
    n_conv: int = 4
    atom_conv_hidden_dim: tuple[int, ...] = (64,)
    bond_conv_hidden_dim: tuple[int, ...] = (64,)
    angle_layer_hidden_dim: tuple[int, ...] = ()
    update_bond: bool = True
    update_angle: bool = True
    mlp_hidden_dims: tuple[int, ...] = (64, 64, 64)
    atom_graph_cutoff: float = 6.0
    bond_graph_cutoff: float = 3.0
    cutoff_coeff: float = 8.0
    learnable_rbf: bool = True
    non_linearity: str = "silu"
    gMLP_norm: str | None = "layer"
    readout_norm: str | None = "layer"
    conv_norm: str | None = None
    mlp_out_bias: bool = False
    composition_model: bool = True
    is_intensive: bool = True
    # "conservative": forces/stress are derivatives of the energy (equijax.potential);
    # "direct": DirectHeads read them out of the final features (no derivatives; FastCHGNet)
    forces: str = "conservative"
    direct_hidden_dims: tuple[int, ...] = (64,)
    # direct stress: "independent" heads, or the pair forces' virial added ("virial": stress
    # labels also train the force weights; "virial_detached": they do not), or the virial alone
    # ("virial_only"); see DirectHeads
    direct_stress: str = "independent"
    # the direct pair (and angle) weights are divided by this (see DirectHeads.norm); 1 = plain
    direct_norm: float = 1.0
    # direct stress: add a three-body term over the bond graph's angles (`angle_stress`), weights
    # from an MLP of the last angle features, the two bonds' features and the centre atom's
    # features, divided by direct_norm
    direct_angle_stress: bool = False
    # direct forces: add three-body (non-central) terms over the bond graph's angles
    # (`angle_edge_gradient`), weights from an MLP of the same features as direct_angle_stress's, divided
    # by direct_norm; with a virial direct_stress their virial joins the stress, which makes
    # "virial_only" exact for CHGNet-like energies (see equijax.nn.direct_heads)
    direct_angle_forces: bool = False
    # a learned pair energy with this many radial functions (0: none) joins the energy; with direct
    # heads its exact forces (at fixed features) join the direct forces and, with a virial
    # direct_stress, its virial the stress, so force labels train part of the energy
    # (equijax.nn.pair_energy); a conservative model differentiates it like the rest
    direct_pair_energy: int = 0
    # a learned three-body energy over the bond graph's angles, with this many Chebyshev terms in
    # cos θ (0: none), joins the energy the same way (equijax.nn.angle_energy)
    direct_angle_energy: int = 0
    # the gradient the direct heads send into the trunk is multiplied by this (1: unchanged)
    direct_trunk_grad: float = 1.0
    # rematerialise each convolution block in the backward pass: with direct forces
    # equijax.nn.remat.remat_call (honoured by every XLA backend; about a third of the step's
    # memory on CPU), with conservative forces jax.checkpoint (which XLA:CPU undoes)
    remat: bool = False
    # messages' first layers multiply atom/bond features before gathering them onto edges and
    # angles (equijax.nn.chgnet; same function, ~3x fewer angle FLOPs); False: concatenate first
    factorized_messages: bool = True
    # the gated MLPs' core and gate first layers run as one product, so each gathered part is
    # multiplied and gathered once for both (equijax.nn.mlp.GatedMLP.fused; same function)
    fused_gates: bool = True

    def __post_init__(self):
        for name in ("atom_conv_hidden_dim", "bond_conv_hidden_dim", "angle_layer_hidden_dim",
                     "mlp_hidden_dims", "direct_hidden_dims"):
            object.__setattr__(self, name, hidden_layers(getattr(self, name)))
        if self.n_conv < 1:
            raise ValueError(f"n_conv must be >= 1, got {self.n_conv}")
        if not 0 < self.bond_graph_cutoff <= self.atom_graph_cutoff:
            raise ValueError("need 0 < bond_graph_cutoff <= atom_graph_cutoff")
        if self.forces not in ("conservative", "direct"):
            raise ValueError(f"forces must be 'conservative' or 'direct', got {self.forces!r}")
        if self.direct_stress not in DIRECT_STRESS:
            raise ValueError(f"direct_stress must be one of {DIRECT_STRESS}, got {self.direct_stress!r}")
        check_direct_norm(self.direct_norm)
        if not valid_trunk_grad(self.direct_trunk_grad):
            raise ValueError(f"direct_trunk_grad must be a finite number >= 0, got "
                             f"{self.direct_trunk_grad!r}")
        for name in ("direct_pair_energy", "direct_angle_energy"):
            size = getattr(self, name)
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {size!r}")
        if self.num_angular % 2 != 1:
            raise ValueError(f"num_angular must be odd, got {self.num_angular}")

    @classmethod
    def from_chgnet_args(cls, model_args: dict[str, Any], **overrides) -> CHGNetConfig:
        """Build from a chgnet checkpoint's ``model_args`` (unknown or unsupported keys raise)."""
        if not model_args.get("mlp_first", True):
            raise ValueError("only chgnet's mlp_first=True (sum of site energies) readout is supported")
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in model_args.items() if k in names}
        kwargs["composition_model"] = model_args.get("composition_model") is not None
        kwargs.update(overrides)
        return cls(**kwargs)


PRESETS: dict[str, CHGNetConfig] = {
    "0.3.0": CHGNetConfig(),
    "0.2.0": CHGNetConfig(num_radial=9, num_angular=9, atom_graph_cutoff=5.0, cutoff_coeff=5.0,
                          mlp_hidden_dims=(64, 64), gMLP_norm=None, readout_norm=None,
                          mlp_out_bias=True),
}


def pair_lengths(lengths: jnp.ndarray, pair: jnp.ndarray, n_pairs: int) -> jnp.ndarray:
    """Length of each undirected pair as the mean of its directed edges' lengths, shape (P,).

    Unused pair slots (possible only in padding) get 1 Å so every basis stays finite.
    """
    total = jax.ops.segment_sum(lengths, pair, n_pairs)
    count = jax.ops.segment_sum(jnp.ones_like(lengths), pair, n_pairs)
    return jnp.where(count > 0, total / jnp.maximum(count, 1), 1.0)


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
    def __call__(self, graph: CrystalGraph, positions=None, cell=None) -> dict[str, jnp.ndarray]:
        cfg = self.config
        atoms, bonds = graph.atoms, graph.bonds
        positions = atoms.nodes["positions"] if positions is None else positions
        cell = atoms.globals["cell"] if cell is None else cell
        n_atoms, n_edges, n_graphs = positions.shape[0], atoms.senders.shape[0], atoms.n_node.shape[0]
        n_pairs = (n_edges + 1) // 2

        vectors = edge_vectors(atoms, jnp, positions, cell)
        lengths = jnp.linalg.norm(vectors, axis=-1)
        pair = atoms.edges["pair"]
        undirected = pair_lengths(lengths, pair, n_pairs)

        rbf = dict(num_radial=cfg.num_radial, cutoff_coeff=cfg.cutoff_coeff, learnable=cfg.learnable_rbf)
        rbf_ag = RadialBessel(cutoff=cfg.atom_graph_cutoff, name="rbf_ag", **rbf)(undirected)
        # bypass: the bond-graph basis only for pairs in the bond graph (bonds < 3 Å, about 1/8 of
        # the 6 Å pairs); the other pairs' weights are exactly 0 (the basis vanishes beyond the
        # cutoff) and are never read. Padding bond nodes repeat a pair: the same value is written.
        bond_pair = bonds.nodes["pair"]
        rbf_bg = RadialBessel(cutoff=cfg.bond_graph_cutoff, name="rbf_bg", **rbf)(
            undirected[bond_pair])
        embedding = self.param("atom_embedding", nn.initializers.normal(1.0),
                               (MAX_ELEMENTS, cfg.atom_fea_dim))
        atom_feas = jnp.take(embedding, atoms.nodes["numbers"] - 1, axis=0, mode="clip")
        bond_feas = nn.Dense(cfg.bond_fea_dim, use_bias=False, name="bond_embedding")(rbf_ag)
        weights_ag = nn.Dense(cfg.atom_fea_dim, use_bias=False, name="bond_weights_ag")(rbf_ag)
        weights_bg = jnp.zeros((n_pairs, cfg.bond_fea_dim), rbf_bg.dtype).at[bond_pair].set(
            nn.Dense(cfg.bond_fea_dim, use_bias=False, name="bond_weights_bg")(rbf_bg))

        unit = vectors / lengths[:, None]
        unit_ij, unit_ik = unit[bonds.edges["edge_ij"]], unit[bonds.edges["edge_ik"]]
        angles = angle_between(unit_ij, unit_ik)
        angle_basis = FourierAngle(cfg.num_angular, cfg.learnable_rbf, name="angle_basis")(angles)
        angle_feas = nn.Dense(cfg.angle_fea_dim, use_bias=False, name="angle_embedding")(angle_basis)
        center = bonds.edges["center"]
        pair_i = bonds.nodes["pair"][bonds.receivers]
        pair_j = bonds.nodes["pair"][bonds.senders]

        conv = dict(act=cfg.non_linearity, gated_norm=cfg.gMLP_norm, norm=cfg.conv_norm,
                    factorized=cfg.factorized_messages, fused_gates=cfg.fused_gates)
        # remat: direct heads (first-order training) recompute each block once its cotangent
        # exists (remat_call: about 3x less memory on CPU, and no reliance on optimization
        # barriers, which XLA:CPU drops); conservative forces keep jax.checkpoint, since
        # recomputing inside the forces' derivative only adds to the second derivative's memory
        block = (remat_call if cfg.remat and cfg.forces == "direct"
                 else (lambda module, *args: module(*args)))
        checkpointed = cfg.remat and cfg.forces == "conservative"
        atom_conv_cls, bond_conv_cls, angle_update_cls = (
            (nn.remat(AtomConv), nn.remat(BondConv), nn.remat(AngleUpdate)) if checkpointed
            else (AtomConv, BondConv, AngleUpdate))
        magmoms = jnp.zeros_like(positions[:, 0])
        for i in range(cfg.n_conv):
            atom_feas = block(atom_conv_cls(cfg.atom_conv_hidden_dim, out_bias=cfg.mlp_out_bias,
                                            name=f"atom_conv_{i}", **conv),
                              atom_feas, bond_feas, weights_ag, atoms.receivers, atoms.senders, pair)
            if i == cfg.n_conv - 1:
                break
            if cfg.update_bond:
                bond_feas = block(bond_conv_cls(cfg.bond_conv_hidden_dim, out_bias=cfg.mlp_out_bias,
                                                name=f"bond_conv_{i}", **conv),
                                  atom_feas, bond_feas, weights_bg, angle_feas, center, pair_i, pair_j)
                if cfg.update_angle:
                    # the last update's output is unused unless a direct head or the learned
                    # three-body energy reads it: a plain call, which XLA removes under jit (a
                    # rematerialised one would stay)
                    unused = i == cfg.n_conv - 2 and not cfg.direct_angle_energy and not (
                        cfg.forces == "direct"
                        and (cfg.direct_angle_stress or cfg.direct_angle_forces))
                    update = angle_update_cls(cfg.angle_layer_hidden_dim, name=f"angle_update_{i}",
                                              **conv)
                    inputs = (atom_feas, bond_feas, angle_feas, center, pair_i, pair_j)
                    angle_feas = update(*inputs) if unused else block(update, *inputs)
            if i == cfg.n_conv - 2:
                magmoms = SiteMagmoms(name="magmom")(atom_feas)

        site_energies = SiteEnergies(cfg.mlp_hidden_dims, cfg.non_linearity, cfg.readout_norm,
                                     name="energy_readout")(atom_feas)
        graph_of_atom = jnp.repeat(jnp.arange(n_graphs), atoms.n_node, total_repeat_length=n_atoms)
        energy = jax.ops.segment_sum(site_energies, graph_of_atom, n_graphs, indices_are_sorted=True)
        atomref = (AtomRef(name="atomref")(atoms.nodes["numbers"]) if cfg.composition_model
                   else jnp.zeros_like(positions[:, 0]))
        out = {"site_energies": site_energies, "energy": energy, "atomref": atomref,
               "magmoms": magmoms}
        energy_gradient = None
        if cfg.direct_pair_energy or cfg.direct_angle_energy:
            sites, energy_gradient = learned_energies(cfg, graph, atom_feas, bond_feas,
                                                      angle_feas, vectors, undirected)
            out["site_energies"] = site_energies + sites
            out["energy"] = energy + jax.ops.segment_sum(sites, graph_of_atom, n_graphs,
                                                         indices_are_sorted=True)
        if cfg.forces == "direct":
            out = add_direct_heads(cfg, out, graph, atom_feas, bond_feas, angle_feas, vectors,
                                   energy_gradient)
        return out
