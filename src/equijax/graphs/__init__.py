"""Crystal graphs: `ase.Atoms` -> CHGNet's atom graph + bond graph as `jraph.GraphsTuple`s,
batching and padding to size buckets, load-balanced device splits, and an on-disk cache."""

from equijax.graphs.build import (
    DEFAULT_BOND_CUTOFF,
    DEFAULT_CUTOFF,
    GraphDataset,
    atoms_to_graph,
    build_graphs,
)
from equijax.graphs.crystal_graph import CrystalGraph, GraphSizes, edge_vectors
from equijax.graphs.validation import IsolatedAtomError

__all__ = [
    "DEFAULT_BOND_CUTOFF",
    "DEFAULT_CUTOFF",
    "CrystalGraph",
    "GraphDataset",
    "GraphSizes",
    "IsolatedAtomError",
    "atoms_to_graph",
    "build_graphs",
    "edge_vectors",
]
