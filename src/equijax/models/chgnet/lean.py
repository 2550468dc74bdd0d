"""CHGNet's energy with no bond- or angle-sized array beyond the angle features themselves: the
memory-lean mode of large structures (``CHGNetConfig.lean_inference``), differentiated once for
forces and stress.

The plain model keeps (P, F) arrays for every one of the P atom-graph pairs (bond features and
radial weights of each layer, and their cotangents), and (A, F) angle embeddings. Here:

- every message runs in pieces of ``lean_chunk`` edges or angles (`equijax.nn.pieces`), each
  recomputed in the backward pass;
- the pairs' radial bases, bond embeddings and weights are computed inside the atom
  convolution's pieces from the pair lengths (P,), and the first angle features inside the
  angle pieces from the unit vectors (E, 3);
- the messages' first layers multiply the atoms' and bonds' features once per block, and the
  pieces gather the products (the factorized form of `equijax.nn.chgnet`, whatever
  ``factorized_messages`` says);
- bond features live on the bond graph's nodes (bonds < 3 Å, about 1/7 of the pairs). A bond
  convolution changes only those (plus its output bias on every pair), so a pair's features in
  layer i are its embedding plus each earlier layer's change, read from a (bonds + 1, F) table
  whose last row (the change of a pair outside the bond graph) is the output layer of zero.

The remaining full-size state is the angle features after each angle update, (A, F) each, and
their cotangents. It is the same function as `equijax.models.chgnet.CHGNet` up to float
rounding (the sums run in the same order). Models with a norm after the residual sum
(``conv_norm``), direct heads or learned energy terms keep the block-rematerialised path.
"""

from __future__ import annotations

import functools
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp

from equijax.graphs.crystal_graph import CrystalGraph, edge_vectors, graph_index
from equijax.models.chgnet.config import CHGNetConfig
from equijax.models.chgnet.geometry import pair_lengths
from equijax.nn.mlp import GatedMLP
from equijax.nn.pieces import scan_pieces
from equijax.nn.radial import FourierAngle, RadialBessel, angle_between
from equijax.nn.readout import AtomRef, SiteEnergies, SiteMagmoms


def lean_supported(config: CHGNetConfig) -> bool:
    """Whether `lean_energy` computes ``config``'s model (`CHGNetConfig.pair_free_lean`: no
    conv norm, conservative forces, no learned energy terms); other configs run the
    rematerialised blocks instead."""
    return config.pair_free_lean


def _apply(module: nn.Module, params: dict, name: str, *args):
    """``module`` applied with the params under ``name`` (none for a parameter-free module)."""
    variables = {"params": params[name]} if name in params else {}
    return module.apply(variables, *args)


def _dense(params: dict, name: str, x: jax.Array) -> jax.Array:
    """The Dense layer ``name`` of ``params`` applied to x (with its bias if it has one)."""
    layer = params[name]
    return nn.Dense(layer["kernel"].shape[-1], use_bias="bias" in layer).apply({"params": layer}, x)


def _first_layer(mlp_params: dict, widths: tuple[int, ...]):
    """A gated MLP's core and gate first layers side by side: the kernel's row blocks of the
    message parts of ``widths`` (each (d_k, 2H)) and the bias (2H,), or None."""
    core, gate = mlp_params["core"]["Dense_0"], mlp_params["gate"]["Dense_0"]
    kernel = jnp.concatenate([core["kernel"], gate["kernel"]], axis=-1)
    bias = jnp.concatenate([core["bias"], gate["bias"]]) if "bias" in core else None
    bounds = [0, *itertools.accumulate(widths)]
    return [kernel[a:b] for a, b in zip(bounds, bounds[1:])], bias


def _gated(mlp: GatedMLP, mlp_params: dict, terms, bias) -> jax.Array:
    """The gated MLP from its first layers' summed ``terms`` (each (c, 2H)), in the order of
    `equijax.nn.mlp.dense_of_gathered`, plus the bias."""
    first = functools.reduce(jnp.add, terms)
    if bias is not None:
        first = first + bias
    return mlp.apply({"params": mlp_params}, first_layer_output=first)


def lean_energy(
    params: dict,
    cfg: CHGNetConfig,
    graph: CrystalGraph,
    positions: jax.Array,
    cell: jax.Array,
) -> dict[str, jax.Array]:
    """CHGNet's outputs (``site_energies``, ``energy``, ``atomref``, ``magmoms``, as
    `equijax.models.chgnet.CHGNet`) from its ``params`` tree, positions (N, 3) Å and cells
    (G, 3, 3) Å, in pieces of ``cfg.lean_chunk`` edges or angles (see the module docstring)."""
    if not lean_supported(cfg):
        raise ValueError("lean_energy: this CHGNet config needs the rematerialised lean path")
    atoms, bonds = graph.atoms, graph.bonds
    n_atoms, n_edges, n_graphs = positions.shape[0], atoms.senders.shape[0], atoms.n_node.shape[0]
    n_pairs = (n_edges + 1) // 2
    chunk = cfg.lean_chunk

    vectors = edge_vectors(atoms, jnp, positions, cell)
    lengths = jnp.linalg.norm(vectors, axis=-1)
    pair = atoms.edges["pair"]
    undirected = pair_lengths(lengths, pair, n_pairs)
    unit = vectors / lengths[:, None]

    rbf = dict(
        num_radial=cfg.num_radial, cutoff_coeff=cfg.cutoff_coeff, learnable=cfg.learnable_rbf
    )
    rbf_ag = RadialBessel(cutoff=cfg.atom_graph_cutoff, **rbf)
    rbf_bg = RadialBessel(cutoff=cfg.bond_graph_cutoff, **rbf)
    angle_basis = FourierAngle(cfg.num_angular, cfg.learnable_rbf)

    def pair_basis(p):
        return _apply(rbf_ag, params, "rbf_ag", undirected[p])

    def first_angle_feas(edge_ij, edge_ik):
        angles = angle_between(unit[edge_ij], unit[edge_ik])
        return _dense(params, "angle_embedding", _apply(angle_basis, params, "angle_basis", angles))

    bond_pair = bonds.nodes["pair"]  # (B,) the pair of each bond-graph node
    n_bonds = bond_pair.shape[0]
    # padding bond nodes may share a padding pair: whichever is kept, only padding reads it
    bond_of_pair = (
        jnp.full(n_pairs, n_bonds, jnp.int32)
        .at[bond_pair]
        .set(jnp.arange(n_bonds, dtype=jnp.int32))
    )
    bond_basis = _apply(rbf_ag, params, "rbf_ag", undirected[bond_pair])
    bond_feas = _dense(params, "bond_embedding", bond_basis)  # (B, Fb)
    weights_bg = _dense(
        params, "bond_weights_bg", _apply(rbf_bg, params, "rbf_bg", undirected[bond_pair])
    )
    changes: list[jax.Array] = []  # per bond conv: (B + 1, Fb) change of each bond, + others'

    atom_embedding = params["atom_embedding"]
    atom_feas = jnp.take(atom_embedding, atoms.nodes["numbers"] - 1, axis=0, mode="clip")
    center = bonds.edges["center"]
    bond_i, bond_j = bonds.receivers, bonds.senders
    edge_ij, edge_ik = bonds.edges["edge_ij"], bonds.edges["edge_ik"]
    angle_feas = None  # None: the first angle features, computed inside each piece
    gated = dict(act=cfg.non_linearity, norm=cfg.gMLP_norm, fused=cfg.fused_gates)

    def atom_conv(i, atom_feas):
        conv = params[f"atom_conv_{i}"]
        mlp = GatedMLP(cfg.atom_fea_dim, cfg.atom_conv_hidden_dim, **gated)
        widths = (cfg.atom_fea_dim, cfg.bond_fea_dim, cfg.atom_fea_dim)
        (k_center, k_pair, k_neighbour), bias = _first_layer(conv["gated_mlp"], widths)
        # the atoms' first-layer products once per block, gathered by every piece
        center_terms, neighbour_terms = atom_feas @ k_center, atom_feas @ k_neighbour

        def messages_of(r, s, p):
            basis = pair_basis(p)
            pair_feas = _dense(params, "bond_embedding", basis)
            if changes:
                bond = bond_of_pair[p]
                for change in changes:
                    pair_feas = change[bond] + pair_feas
            terms = (center_terms[r], pair_feas @ k_pair, neighbour_terms[s])
            weights = _dense(params, "bond_weights_ag", basis)
            return _gated(mlp, conv["gated_mlp"], terms, bias) * weights

        def segment(acc, messages, r, s, p):
            return acc + jax.ops.segment_sum(messages, r, n_atoms, indices_are_sorted=True)

        zeros = jnp.zeros((n_atoms, cfg.atom_fea_dim), atom_feas.dtype)
        summed = scan_pieces(
            messages_of, n_edges, chunk, (atoms.receivers, atoms.senders, pair), (zeros, segment)
        )
        return _dense(conv, "mlp_out", summed) + atom_feas

    def angle_pieces(angle_feas):
        """The per-angle arrays of the pieces and a function reading a piece's angle features."""
        if angle_feas is None:
            return (
                center,
                bond_i,
                bond_j,
                edge_ij,
                edge_ik,
            ), lambda c, i, j, eij, eik: first_angle_feas(eij, eik)
        return (center, bond_i, bond_j, angle_feas), lambda c, i, j, a: a

    def bond_graph_messages(mlp_params, atom_feas, bond_feas):
        """``messages(a, c, i, j)``: the gated MLP of ``[b_i, b_j, a, x_c]`` for a piece, with
        the bonds' and atoms' first-layer products computed once per block."""
        widths = (cfg.bond_fea_dim, cfg.bond_fea_dim, cfg.angle_fea_dim, cfg.atom_fea_dim)
        (k_i, k_j, k_angle, k_center), bias = _first_layer(mlp_params, widths)
        bond_i_terms, bond_j_terms = bond_feas @ k_i, bond_feas @ k_j
        center_terms = atom_feas @ k_center
        return lambda mlp, a, c, i, j: _gated(
            mlp,
            mlp_params,
            (bond_i_terms[i], bond_j_terms[j], a @ k_angle, center_terms[c]),
            bias,
        )

    def bond_conv(k, atom_feas, bond_feas, angle_feas):
        conv = params[f"bond_conv_{k}"]
        mlp = GatedMLP(cfg.bond_fea_dim, cfg.bond_conv_hidden_dim, **gated)
        arrays, angles_of = angle_pieces(angle_feas)

        gated_messages = bond_graph_messages(conv["gated_mlp"], atom_feas, bond_feas)

        def messages_of(c, i, j, *rest):
            messages = gated_messages(mlp, angles_of(c, i, j, *rest), c, i, j)
            return messages * weights_bg[i] * weights_bg[j]

        def segment(acc, messages, c, i, *rest):
            return acc + jax.ops.segment_sum(messages, i, n_bonds + 1)

        zeros = jnp.zeros((n_bonds + 1, cfg.bond_fea_dim), bond_feas.dtype)
        summed = scan_pieces(messages_of, center.shape[0], chunk, arrays, (zeros, segment))
        return _dense(conv, "mlp_out", summed)  # (B + 1, Fb): the last row is the zero sum's

    def angle_update(k, atom_feas, bond_feas, angle_feas):
        update = params[f"angle_update_{k}"]
        mlp = GatedMLP(cfg.angle_fea_dim, cfg.angle_layer_hidden_dim, **gated)
        arrays, angles_of = angle_pieces(angle_feas)

        gated_messages = bond_graph_messages(update["gated_mlp"], atom_feas, bond_feas)

        def messages_of(c, i, j, *rest):
            a = angles_of(c, i, j, *rest)
            return gated_messages(mlp, a, c, i, j) + a

        return scan_pieces(messages_of, center.shape[0], chunk, arrays)

    magmoms = jnp.zeros_like(positions[:, 0])
    for i in range(cfg.n_conv):
        atom_feas = atom_conv(i, atom_feas)
        if i == cfg.n_conv - 1:
            break
        if cfg.update_bond:
            change = bond_conv(i, atom_feas, bond_feas, angle_feas)
            changes.append(change)
            bond_feas = change[:n_bonds] + bond_feas
            # the last angle update's output is never read
            if cfg.update_angle and i < cfg.n_conv - 2:
                angle_feas = angle_update(i, atom_feas, bond_feas, angle_feas)
        if i == cfg.n_conv - 2:
            magmoms = _apply(SiteMagmoms(), params, "magmom", atom_feas)

    readout = SiteEnergies(cfg.mlp_hidden_dims, cfg.non_linearity, cfg.readout_norm)
    site_energies = _apply(readout, params, "energy_readout", atom_feas)
    graph_of_atom = graph_index(atoms.n_node, n_atoms)
    energy = jax.ops.segment_sum(site_energies, graph_of_atom, n_graphs, indices_are_sorted=True)
    atomref = (
        _apply(AtomRef(), params, "atomref", atoms.nodes["numbers"])
        if cfg.composition_model
        else jnp.zeros_like(positions[:, 0])
    )
    return {
        "site_energies": site_energies,
        "energy": energy,
        "atomref": atomref,
        "magmoms": magmoms,
    }
