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
    n_short = short.size
    group_start = np.searchsorted(centers, centers, side="left")
    group_size = np.searchsorted(centers, centers, side="right") - group_start
    first_of_angle = np.repeat(np.arange(n_short), group_size)
    run_start = np.repeat(np.cumsum(group_size) - group_size, group_size)
    second_of_angle = np.repeat(group_start, group_size) + (
        np.arange(first_of_angle.size) - run_start
    )
    keep = first_of_angle != second_of_angle
    e_ij = short[first_of_angle[keep]]
    e_ik = short[second_of_angle[keep]]
    return BondGraph(
        bond_edge=edges.pair_edge[bond_pair],
        bond_pair=bond_pair.astype(np.int32),
        angle_receivers=bond_of_pair[edges.pair[e_ij]],
        angle_senders=bond_of_pair[edges.pair[e_ik]],
        angle_center=edges.centers[e_ij],
        angle_edge_ij=e_ij.astype(np.int32),
        angle_edge_ik=e_ik.astype(np.int32),
    )
