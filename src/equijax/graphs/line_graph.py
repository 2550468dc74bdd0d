"""CHGNet's bond graph: short bonds as nodes, the angles between them as edges (vectorised)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from equijax.graphs.neighbors import DirectedEdges


class BondGraph(NamedTuple):
    """Bond-graph arrays of one structure (see `equijax.graphs.crystal_graph`)."""

    bond_edge: np.ndarray  # int32 (B,) a directed atom-graph edge of each short bond
    bond_pair: np.ndarray  # int32 (B,) the undirected pair of each short bond
    angle_receivers: np.ndarray  # int32 (A,) bond node of edge_ij
    angle_senders: np.ndarray  # int32 (A,) bond node of edge_ik
    angle_center: np.ndarray  # int32 (A,) centre atom
    angle_edge_ij: np.ndarray  # int32 (A,)
    angle_edge_ik: np.ndarray  # int32 (A,)


def bond_graph(edges: DirectedEdges, bond_cutoff: float) -> BondGraph:
    """Build the bond graph from a centre-sorted neighbour list.

    Bonds are undirected pairs shorter than ``bond_cutoff``; angles are all ordered pairs of
    distinct short directed edges leaving the same centre atom (``k (k - 1)`` for a centre with
    ``k`` short edges), which is the rule of CHGNet's ``Graph.line_graph_adjacency_list``.
    """
    short = np.flatnonzero(edges.distances < bond_cutoff)  # still sorted by centre
    is_short_pair = np.zeros(max(edges.n_pairs, 1), dtype=bool)
    is_short_pair[edges.pair[short]] = True
    bond_pair = np.flatnonzero(is_short_pair)
    bond_of_pair = np.full(max(edges.n_pairs, 1), -1, dtype=np.int32)
    bond_of_pair[bond_pair] = np.arange(bond_pair.size, dtype=np.int32)

    # Group the short edges by centre and enumerate every ordered pair inside each group.
    centers = edges.centers[short]
    bond_of_short = bond_of_pair[edges.pair[short]]
    per_center = np.bincount(centers, minlength=1)
    center_start = np.cumsum(per_center) - per_center
    group_size = per_center[centers]
    first = np.repeat(np.arange(short.size), group_size)  # intp indices: no conversions
    # position inside the run of repeats = global index - start of the run
    run_start = np.repeat(np.cumsum(group_size) - group_size, group_size)
    second = np.repeat(center_start[centers], group_size) + (np.arange(first.size) - run_start)
    keep = first != second
    first, second = first[keep], second[keep]
    return BondGraph(
        bond_edge=edges.pair_edge[bond_pair],
        bond_pair=bond_pair.astype(np.int32),
        angle_receivers=np.take(bond_of_short, first),
        angle_senders=np.take(bond_of_short, second),
        angle_center=np.take(centers, first),
        angle_edge_ij=np.take(short.astype(np.int32), first),
        angle_edge_ik=np.take(short.astype(np.int32), second),
    )
