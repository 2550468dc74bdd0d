"""Batch, unbatch and pad crystal graphs (host side, numpy).

Padding follows jraph's convention (`jraph.pad_with_graphs`): the first padding graph holds every
padding node, edge, bond and angle, and any further padding graphs are empty. Use
`padding_masks` (or `jraph.get_node_padding_mask` etc. on either member graph) inside jit.

Padding entries are built so that nothing downstream can produce a NaN: padding edges connect
the first padding atom to its own images along the unit vectors of an identity cell (length 1 Å,
mutually orthogonal), padding angles join two such edges (90°), and padding atoms have atomic
number 0. Their contributions land only in the padding graph, which masks remove.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jraph
import numpy as np

from equijax.graphs.crystal_graph import CrystalGraph, GraphSizes

_UNIT_SHIFTS = np.eye(3, dtype=np.int32)


def _cat(arrays, offsets=None):
    if offsets is not None:
        arrays = [a + o for a, o in zip(arrays, offsets)]
    return np.concatenate(arrays, axis=0)


def _starts(counts) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.int64)
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int32)


def batch_graphs(graphs: Sequence[CrystalGraph]) -> CrystalGraph:
    """Concatenate crystal graphs into one (disjoint union), shifting every index field."""
    if len(graphs) == 0:
        raise ValueError("batch_graphs needs at least one graph")
    atoms = [g.atoms for g in graphs]
    bonds = [g.bonds for g in graphs]
    node0 = _starts([a.nodes["numbers"].shape[0] for a in atoms])
    edge0 = _starts([a.senders.shape[0] for a in atoms])
    pair0 = _starts([int(np.sum(a.globals["n_pairs"])) for a in atoms])
    bond0 = _starts([b.nodes["edge"].shape[0] for b in bonds])
    atom_graph = jraph.GraphsTuple(
        nodes={k: _cat([a.nodes[k] for a in atoms]) for k in atoms[0].nodes},
        edges={
            "shift": _cat([a.edges["shift"] for a in atoms]),
            "pair": _cat([a.edges["pair"] for a in atoms], pair0),
        },
        senders=_cat([a.senders for a in atoms], node0),
        receivers=_cat([a.receivers for a in atoms], node0),
        globals={k: _cat([a.globals[k] for a in atoms]) for k in atoms[0].globals},
        n_node=_cat([a.n_node for a in atoms]),
        n_edge=_cat([a.n_edge for a in atoms]),
    )
    bond_graph = jraph.GraphsTuple(
        nodes={
            "edge": _cat([b.nodes["edge"] for b in bonds], edge0),
            "pair": _cat([b.nodes["pair"] for b in bonds], pair0),
        },
        edges={
            "center": _cat([b.edges["center"] for b in bonds], node0),
            "edge_ij": _cat([b.edges["edge_ij"] for b in bonds], edge0),
            "edge_ik": _cat([b.edges["edge_ik"] for b in bonds], edge0),
        },
        senders=_cat([b.senders for b in bonds], bond0),
        receivers=_cat([b.receivers for b in bonds], bond0),
        globals=None,
        n_node=_cat([b.n_node for b in bonds]),
        n_edge=_cat([b.n_edge for b in bonds]),
    )
    return CrystalGraph(atoms=atom_graph, bonds=bond_graph)


def unbatch_graphs(graph: CrystalGraph) -> list[CrystalGraph]:
    """Split a batched (unpadded) crystal graph into single graphs; inverse of `batch_graphs`."""
    graph = CrystalGraph(*(_to_numpy(g) for g in graph))
    a, b = graph.atoms, graph.bonds
    n_node, n_edge = a.n_node, a.n_edge
    n_bond, n_angle = b.n_node, b.n_edge
    n_pairs = a.globals["n_pairs"]
    node0, edge0, pair0 = _starts(n_node), _starts(n_edge), _starts(n_pairs)
    bond0, angle0 = _starts(n_bond), _starts(n_angle)
    out = []
    for g in range(n_node.shape[0]):
        nodes = slice(node0[g], node0[g] + n_node[g])
        edges = slice(edge0[g], edge0[g] + n_edge[g])
        bnds = slice(bond0[g], bond0[g] + n_bond[g])
        angles = slice(angle0[g], angle0[g] + n_angle[g])
        atom_graph = jraph.GraphsTuple(
            nodes={k: v[nodes] for k, v in a.nodes.items()},
            edges={"shift": a.edges["shift"][edges], "pair": a.edges["pair"][edges] - pair0[g]},
            senders=a.senders[edges] - node0[g],
            receivers=a.receivers[edges] - node0[g],
            globals={k: v[g : g + 1] for k, v in a.globals.items()},
            n_node=n_node[g : g + 1],
            n_edge=n_edge[g : g + 1],
        )
        bond_graph = jraph.GraphsTuple(
            nodes={
                "edge": b.nodes["edge"][bnds] - edge0[g],
                "pair": b.nodes["pair"][bnds] - pair0[g],
            },
            edges={
                "center": b.edges["center"][angles] - node0[g],
                "edge_ij": b.edges["edge_ij"][angles] - edge0[g],
                "edge_ik": b.edges["edge_ik"][angles] - edge0[g],
            },
            senders=b.senders[angles] - bond0[g],
            receivers=b.receivers[angles] - bond0[g],
            globals=None,
            n_node=n_bond[g : g + 1],
            n_edge=n_angle[g : g + 1],
        )
        out.append(CrystalGraph(atoms=atom_graph, bonds=bond_graph))
    return out


def _to_numpy(graph: jraph.GraphsTuple) -> jraph.GraphsTuple:
    return jax.tree_util.tree_map(np.asarray, graph)


def pad_graph(graph: CrystalGraph, sizes: GraphSizes) -> CrystalGraph:
    """Pad a batched graph to exactly ``sizes`` by appending padding graphs (jraph convention).

    Every size must exceed the real one by at least 1 (``n_edge`` by 2), so that the first padding
    graph owns at least one padding atom, two padding edges, one bond and one angle slot.
    """
    real = graph.sizes
    need = GraphSizes(
        real.n_node + 1, real.n_edge + 2, real.n_bond + 1, real.n_angle + 1, real.n_graph + 1
    )
    short = [f for f, s, n in zip(GraphSizes._fields, sizes, need) if s < n]
    if short:
        raise ValueError(
            f"padding sizes {sizes} too small for graph of sizes {real}: "
            f"{', '.join(short)} must be at least {need}"
        )
    a, b = graph.atoms, graph.bonds
    pad_nodes = sizes.n_node - real.n_node
    pad_edges = sizes.n_edge - real.n_edge
    pad_bonds = sizes.n_bond - real.n_bond
    pad_angles = sizes.n_angle - real.n_angle
    pad_graphs = sizes.n_graph - real.n_graph
    pair_start = int(np.sum(a.globals["n_pairs"]))
    pad_pairs = (pad_edges + 1) // 2
    node0, edge0, bond0 = real.n_node, real.n_edge, real.n_bond

    def count(first_value):
        return np.array([first_value] + [0] * (pad_graphs - 1), dtype=np.int32)

    pad_edge_pair = pair_start + np.arange(pad_edges, dtype=np.int32) // 2
    pad_bond_edge = edge0 + np.arange(pad_bonds, dtype=np.int32) % pad_edges
    dtype = a.nodes["positions"].dtype
    atom_graph = jraph.GraphsTuple(
        nodes={
            "numbers": np.concatenate([a.nodes["numbers"], np.zeros(pad_nodes, np.int32)]),
            "positions": np.concatenate([a.nodes["positions"], np.zeros((pad_nodes, 3), dtype)]),
        },
        edges={
            "shift": np.concatenate([a.edges["shift"], _UNIT_SHIFTS[np.arange(pad_edges) % 3]]),
            "pair": np.concatenate([a.edges["pair"], pad_edge_pair]),
        },
        senders=np.concatenate([a.senders, np.full(pad_edges, node0, np.int32)]),
        receivers=np.concatenate([a.receivers, np.full(pad_edges, node0, np.int32)]),
        globals={
            "cell": np.concatenate(
                [a.globals["cell"], np.tile(np.eye(3, dtype=dtype), (pad_graphs, 1, 1))]
            ),
            "volume": np.concatenate([a.globals["volume"], np.ones(pad_graphs, dtype)]),
            "n_atoms": np.concatenate([a.globals["n_atoms"], count(pad_nodes)]),
            "pbc": np.concatenate([a.globals["pbc"], np.ones((pad_graphs, 3), bool)]),
            "n_pairs": np.concatenate([a.globals["n_pairs"], count(pad_pairs)]),
        },
        n_node=np.concatenate([a.n_node, count(pad_nodes)]),
        n_edge=np.concatenate([a.n_edge, count(pad_edges)]),
    )
    bond_graph = jraph.GraphsTuple(
        nodes={
            "edge": np.concatenate([b.nodes["edge"], pad_bond_edge]),
            "pair": np.concatenate([b.nodes["pair"], pad_edge_pair[pad_bond_edge - edge0]]),
        },
        edges={
            "center": np.concatenate([b.edges["center"], np.full(pad_angles, node0, np.int32)]),
            "edge_ij": np.concatenate([b.edges["edge_ij"], np.full(pad_angles, edge0, np.int32)]),
            "edge_ik": np.concatenate(
                [b.edges["edge_ik"], np.full(pad_angles, edge0 + 1, np.int32)]
            ),
        },
        senders=np.concatenate([b.senders, np.full(pad_angles, bond0, np.int32)]),
        receivers=np.concatenate([b.receivers, np.full(pad_angles, bond0, np.int32)]),
        globals=None,
        n_node=np.concatenate([b.n_node, count(pad_bonds)]),
        n_edge=np.concatenate([b.n_edge, count(pad_angles)]),
    )
    return CrystalGraph(atoms=atom_graph, bonds=bond_graph)


def unpad_graph(graph: CrystalGraph) -> CrystalGraph:
    """Remove the padding graphs added by `pad_graph` (returns numpy arrays)."""
    graph = CrystalGraph(*(_to_numpy(g) for g in graph))
    n_real = graph.num_graphs - int(jraph.get_number_of_padding_with_graphs_graphs(graph.atoms))
    parts = unbatch_graphs(graph)[:n_real]
    return batch_graphs(parts)


def padding_masks(graph: CrystalGraph) -> dict:
    """Boolean masks of the real entries of a padded graph (works inside jit).

    Returns ``{"graph": (G,), "node": (N,), "edge": (E,), "bond": (B,), "angle": (A,)}``.
    Only valid on graphs padded by `pad_graph` (the last graphs are padding).
    """
    return {
        "graph": jraph.get_graph_padding_mask(graph.atoms),
        "node": jraph.get_node_padding_mask(graph.atoms),
        "edge": jraph.get_edge_padding_mask(graph.atoms),
        "bond": jraph.get_node_padding_mask(graph.bonds),
        "angle": jraph.get_edge_padding_mask(graph.bonds),
    }
