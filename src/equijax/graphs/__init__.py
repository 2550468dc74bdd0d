"""Crystal graphs: `ase.Atoms` -> CHGNet's atom graph + bond graph as `jraph.GraphsTuple`s,
batching and padding to size buckets, load-balanced device splits, and an on-disk cache."""

from equijax.graphs.balance import (
    CostModel,
    calibrate_cost_model,
    fit_cost_model,
    graph_counts,
    load_imbalance,
    split_balanced,
)
from equijax.graphs.batching import (
    batch_graphs,
    pad_graph,
    padding_masks,
    unbatch_graphs,
    unpad_graph,
)
from equijax.graphs.buckets import BucketPolicy, max_sizes, pad_batch, padding_fraction
from equijax.graphs.build import (
    DEFAULT_BOND_CUTOFF,
    DEFAULT_CUTOFF,
    GraphDataset,
    atoms_to_graph,
    build_graphs,
)
from equijax.graphs.cache import GraphCache
from equijax.graphs.crystal_graph import CrystalGraph, GraphSizes, edge_vectors, graph_index
from equijax.graphs.validation import IsolatedAtomError

__all__ = [
    "DEFAULT_BOND_CUTOFF",
    "DEFAULT_CUTOFF",
    "BucketPolicy",
    "CostModel",
    "CrystalGraph",
    "GraphCache",
    "GraphDataset",
    "GraphSizes",
    "IsolatedAtomError",
    "atoms_to_graph",
    "batch_graphs",
    "build_graphs",
    "calibrate_cost_model",
    "edge_vectors",
    "graph_index",
    "fit_cost_model",
    "graph_counts",
    "load_imbalance",
    "max_sizes",
    "pad_batch",
    "pad_graph",
    "padding_fraction",
    "padding_masks",
    "split_balanced",
    "unbatch_graphs",
    "unpad_graph",
]
