"""Training batches: padded graphs with aligned label arrays and masks, split over devices.

A device batch is a ``(CrystalGraph, Targets)`` pair whose arrays carry a leading device axis
(D, ...), each slice padded to one common shape, so `shard_map` hands each device its own batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import numpy as np

from equijax.graphs import (
    BucketPolicy,
    CrystalGraph,
    batch_graphs,
    max_sizes,
    pad_graph,
    split_balanced,
)
from equijax.graphs.balance import CostModel


class Targets(NamedTuple):
    """Labels aligned with a padded graph; masks are 1 for present labels of real entries.

    Shapes: ``energy_per_atom`` (G,) eV/atom, ``forces`` (N, 3) eV/Å, ``stress`` (G, 3, 3) GPa,
    ``magmoms`` (N,) μB, masks (G,) or (N,) float32.
    """

    energy_per_atom: np.ndarray
    forces: np.ndarray
    stress: np.ndarray
    magmoms: np.ndarray
    energy_mask: np.ndarray
    forces_mask: np.ndarray
    stress_mask: np.ndarray
    magmoms_mask: np.ndarray


def targets_for(structures: Sequence, n_node: int, n_graph: int) -> Targets:
    """Padded label arrays for ``structures`` (objects with ``atoms, energy, forces, stress,
    magmoms``; missing labels are None and get mask 0)."""
    e = np.zeros(n_graph, np.float32)
    s = np.zeros((n_graph, 3, 3), np.float32)
    f = np.zeros((n_node, 3), np.float32)
    m = np.zeros(n_node, np.float32)
    e_mask, s_mask = np.zeros(n_graph, np.float32), np.zeros(n_graph, np.float32)
    f_mask, m_mask = np.zeros(n_node, np.float32), np.zeros(n_node, np.float32)
    start = 0
    for g, item in enumerate(structures):
        n = len(item.atoms)
        atoms = slice(start, start + n)
        if item.energy is not None:
            e[g], e_mask[g] = item.energy / n, 1.0
        if item.stress is not None:
            s[g], s_mask[g] = item.stress, 1.0
        if item.forces is not None:
            f[atoms], f_mask[atoms] = item.forces, 1.0
        if item.magmoms is not None:  # the model predicts magnitudes (as chgnet trains)
            m[atoms], m_mask[atoms] = np.abs(item.magmoms), 1.0
        start += n
    return Targets(e, f, s, m, e_mask, f_mask, s_mask, m_mask)


def device_batch(
    graphs: Sequence[CrystalGraph],
    structures: Sequence,
    index: np.ndarray,
    n_devices: int,
    policy: BucketPolicy,
    cost_model: CostModel | None = None,
) -> tuple[CrystalGraph, Targets, list[np.ndarray]]:
    """Split the structures ``index`` over devices (balanced), pad every device's share to one
    common bucket shape and stack along a leading device axis.

    Returns the stacked graph, stacked targets and the per-device index groups.
    """
    if len(index) < n_devices:
        raise ValueError(f"a global batch of {len(index)} cannot feed {n_devices} devices")
    sub = [graphs[i] for i in index]
    costs = (cost_model or CostModel()).graph_costs(sub)
    sizes = np.array([g.sizes[:4] for g in sub], dtype=np.float64)
    groups = split_balanced(costs, n_devices, sizes=sizes)
    batched = [batch_graphs([sub[k] for k in grp]) for grp in groups]
    common = max_sizes(policy.sizes_for(b.sizes) for b in batched)
    padded = [pad_graph(b, common) for b in batched]
    targets = [
        targets_for([structures[index[k]] for k in grp], common.n_node, common.n_graph)
        for grp in groups
    ]
    stack = lambda *xs: np.stack(xs)
    return (
        jax.tree_util.tree_map(stack, *padded),
        jax.tree_util.tree_map(stack, *targets),
        [np.asarray(index)[grp] for grp in groups],
    )
