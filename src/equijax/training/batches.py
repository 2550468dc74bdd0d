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
    GraphSizes,
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
    """Padded label arrays for ``structures`` (objects with ``n_atoms, energy, forces, stress,
    magmoms``, e.g. `LabeledStructure`; missing labels are None and get mask 0)."""
    e = np.zeros(n_graph, np.float32)
    s = np.zeros((n_graph, 3, 3), np.float32)
    f = np.zeros((n_node, 3), np.float32)
    m = np.zeros(n_node, np.float32)
    e_mask, s_mask = np.zeros(n_graph, np.float32), np.zeros(n_graph, np.float32)
    f_mask, m_mask = np.zeros(n_node, np.float32), np.zeros(n_node, np.float32)
    start = 0
    for g, item in enumerate(structures):
        n = item.n_atoms
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
    *,
    sizes: np.ndarray | None = None,
    local: Sequence[int] | None = None,
) -> tuple[CrystalGraph, Targets, list[np.ndarray]]:
    """Split the structures ``index`` over devices (balanced), pad every device's share to one
    common bucket shape and stack along a leading device axis.

    ``sizes``: (len(graphs), 4) atoms, edges, bonds, angles of every graph (e.g. a dataset's
    stored counts), so that the split and the padded shape need no graph; default: read from
    the graphs of ``index``. ``local``: the devices whose shares are read and built (this
    process's, in a multi-process run); the others' slices are zeros of the same shape, which
    `shard_batch` never reads. Default: all.

    Returns the stacked graph, stacked targets and the per-device index groups (all devices).
    """
    if len(index) < n_devices:
        raise ValueError(f"a global batch of {len(index)} cannot feed {n_devices} devices")
    index = np.asarray(index)
    if sizes is None:
        sub_sizes = np.array([graphs[i].sizes[:4] for i in index], dtype=np.float64)
    else:
        sub_sizes = np.asarray(sizes[index], dtype=np.float64)
    costs = (cost_model or CostModel())(sub_sizes[:, [0, 1, 3]])
    groups = split_balanced(costs, n_devices, sizes=sub_sizes)
    real = [
        GraphSizes(*sub_sizes[grp].sum(axis=0).astype(int).tolist(), len(grp)) for grp in groups
    ]
    common = max_sizes(policy.sizes_for(r) for r in real)
    local = range(n_devices) if local is None else local
    padded, targets = {}, {}
    for d in local:
        grp = index[groups[d]]
        padded[d] = pad_graph(batch_graphs([graphs[i] for i in grp]), common)
        targets[d] = targets_for([structures[i] for i in grp], common.n_node, common.n_graph)
    first = next(iter(local))
    zeros = lambda tree: jax.tree_util.tree_map(np.zeros_like, tree)
    stack = lambda *xs: np.stack(xs)
    return (
        jax.tree_util.tree_map(
            stack, *[padded[d] if d in padded else zeros(padded[first]) for d in range(n_devices)]
        ),
        jax.tree_util.tree_map(
            stack,
            *[targets[d] if d in targets else zeros(targets[first]) for d in range(n_devices)],
        ),
        [index[grp] for grp in groups],
    )
