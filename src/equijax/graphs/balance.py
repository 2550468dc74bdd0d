"""Load balancing: split graphs into per-device batches of nearly equal estimated cost
(as FastCHGNet does for multi-GPU training).

Under `shard_map` every device runs the same padded shape, so balancing the real work also
minimises the common bucket all devices are padded to.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np
from scipy.optimize import nnls  # scipy comes with ase

from equijax.graphs.crystal_graph import CrystalGraph


def graph_counts(graphs: Sequence[CrystalGraph]) -> np.ndarray:
    """(n_graphs, 3) array of atoms, directed edges and angles per graph."""
    return np.array(
        [
            (int(np.sum(g.atoms.n_node)), int(np.sum(g.atoms.n_edge)), int(np.sum(g.bonds.n_edge)))
            for g in graphs
        ],
        dtype=np.float64,
    )


@dataclasses.dataclass(frozen=True)
class CostModel:
    """Estimated cost of a graph: ``per_atom * atoms + per_edge * edges + per_angle * angles``
    (seconds of one training step). ``per_batch`` is the fixed cost of a step; it is reported by
    calibration but does not affect balancing.

    The defaults were fitted by `calibrate_cost_model` on the CHGNet-sized proxy step
    (`equijax.bench.proxy`, forward + backward) with ``equijax bench graphs --calibrate`` on a
    2-core AMD EPYC CPU (jax 0.10.2), rounded over three calibrations: about 5.8 µs per edge,
    5.7 µs per angle and 0-2 µs per atom (node work is small next to the edge and angle MLPs).
    Only the ratios matter for balancing; recalibrate for your model and device.
    """

    per_atom: float = 0.7e-6
    per_edge: float = 5.8e-6
    per_angle: float = 5.7e-6
    per_batch: float = 0.0

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        """Costs of graphs given their ``(atoms, edges, angles)`` counts, shape (..., 3)."""
        counts = np.asarray(counts, dtype=np.float64)
        return counts @ np.array([self.per_atom, self.per_edge, self.per_angle])

    def graph_costs(self, graphs: Sequence[CrystalGraph]) -> np.ndarray:
        """Costs of a list of graphs, shape (n_graphs,)."""
        return self(graph_counts(graphs))


def fit_cost_model(counts: np.ndarray, seconds: np.ndarray) -> CostModel:
    """Least-squares fit, with non-negative coefficients, of step times to their counts.

    Args:
        counts: (M, 3) atoms, edges and angles each measured step computed on.
        seconds: (M,) the measured step times.

    The model is ``seconds = per_batch + counts @ (per_atom, per_edge, per_angle)``.
    """
    counts = np.asarray(counts, dtype=np.float64)
    seconds = np.asarray(seconds, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[1] != 3 or counts.shape[0] != seconds.shape[0]:
        raise ValueError(f"need counts (M, 3) and seconds (M,), got {counts.shape} {seconds.shape}")
    if counts.shape[0] < 4:
        raise ValueError(
            f"need at least 4 measurements to fit 4 coefficients, got {counts.shape[0]}"
        )
    design = np.concatenate([np.ones((counts.shape[0], 1)), counts], axis=1)
    # Columns differ by orders of magnitude (1 vs 1e4 angles): solve on unit-norm columns.
    norms = np.linalg.norm(design, axis=0)
    norms[norms == 0] = 1.0
    coef = nnls(design / norms, seconds)[0] / norms
    return CostModel(
        per_atom=float(coef[1]),
        per_edge=float(coef[2]),
        per_angle=float(coef[3]),
        per_batch=float(coef[0]),
    )


def calibrate_cost_model(
    step: Callable[[object], object],
    batches: Sequence[tuple[object, np.ndarray]],
    repeats: int = 5,
) -> CostModel:
    """Measure ``step`` on batches of known (atoms, edges, angles) counts and fit a `CostModel`.

    Args:
        step: a function of one padded batch that returns a jax value (it is blocked on).
        batches: ``(batch, counts)`` pairs; ``counts`` is the (3,) size the step really computes
            on (for static shapes: the padded sizes).
        repeats: timed calls per batch after one warm-up (compilation) call; the median is used.
    """
    counts, seconds = [], []
    for batch, count in batches:
        jax.block_until_ready(step(batch))
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(step(batch))
            times.append(time.perf_counter() - t0)
        counts.append(count)
        seconds.append(float(np.median(times)))
    return fit_cost_model(np.array(counts), np.array(seconds))


def split_balanced(
    costs: np.ndarray,
    n_devices: int,
    sizes: np.ndarray | None = None,
    tolerance: float = 0.05,
    max_rounds: int = 1000,
) -> list[np.ndarray]:
    """Partition item indices into ``n_devices`` groups of nearly equal total cost.

    Args:
        costs: (n,) estimated cost of each graph (e.g. `CostModel.graph_costs`).
        n_devices: number of groups.
        sizes: optional (n, k) array sizes of each graph (e.g. atoms, edges, bonds, angles).
            Under `shard_map` every device is padded to the per-dimension maximum, so after the
            cost is balanced, graphs are exchanged to balance these too, keeping every device's
            cost within ``tolerance`` of the mean (or no worse than after the first stage).
        tolerance: allowed relative cost excess per device in the second stage.
        max_rounds: bound on improvement steps per stage.

    Stage 1: largest-first greedy assignment, then moves and swaps out of the most loaded
    device while they lower the larger of the two devices' loads. Stage 2 (with ``sizes``): the
    same on the largest normalised size, under the cost cap. Returns sorted index arrays.
    """
    costs = np.asarray(costs, dtype=np.float64)
    if n_devices < 1:
        raise ValueError(f"n_devices must be >= 1, got {n_devices}")
    if costs.ndim != 1:
        raise ValueError(f"costs must have shape (n,), got {costs.shape}")
    if costs.size < n_devices:
        raise ValueError(f"cannot split {costs.size} graphs over {n_devices} devices")
    if not np.isfinite(costs).all() or (costs < 0).any():
        raise ValueError("costs must be finite and non-negative")
    cost = _normalised(costs[:, None], n_devices)
    owner = np.empty(costs.size, dtype=np.int64)
    cost_loads = np.zeros((n_devices, 1))
    counts = np.zeros(n_devices, dtype=np.int64)
    for k in np.argsort(-costs, kind="stable"):
        d = int(np.lexsort((counts, cost_loads[:, 0]))[0])  # least loaded; ties: fewest graphs
        owner[k] = d
        cost_loads[d] += cost[k]
        counts[d] += 1
    for _ in range(max_rounds):
        if not _improve_most_loaded(cost, owner, cost_loads):
            break
    if sizes is not None:
        sizes = np.asarray(sizes, dtype=np.float64)
        if sizes.ndim != 2 or sizes.shape[0] != costs.size:
            raise ValueError(f"sizes must have shape ({costs.size}, k), got {sizes.shape}")
        x = _normalised(sizes, n_devices)
        loads = np.stack([x[owner == d].sum(axis=0) for d in range(n_devices)])
        cap = max(1.0 + tolerance, float(cost_loads.max()))
        for _ in range(max_rounds):
            if not _improve_most_loaded(x, owner, loads, cost, cost_loads, cap):
                break
    return [np.flatnonzero(owner == d) for d in range(n_devices)]


def _normalised(x: np.ndarray, n_devices: int) -> np.ndarray:
    share = x.sum(axis=0) / n_devices
    return x / np.where(share > 0, share, 1.0)  # ideal per-device load: 1 in every column


def _improve_most_loaded(x, owner, loads, cost=None, cost_loads=None, cost_cap=np.inf) -> bool:
    """Apply the best move or swap between the most loaded device and another one; return False
    if none lowers the larger of the two loads (a device's load: its largest column of ``x``).
    With ``cost``, changes that would put a device's cost above ``cost_cap`` are not allowed."""
    device_load = loads.max(axis=1)
    hi = int(np.argmax(device_load))
    items_hi = np.flatnonzero(owner == hi)
    best, best_change = device_load[hi] * (1 - 1e-12), None
    for lo in np.argsort(device_load):
        if lo == hi:
            continue
        items_lo = np.flatnonzero(owner == lo)

        # column 0 of the candidates moves a alone; column b > 0 swaps a with items_lo[b - 1]
        def delta(v, items_a, items_b):
            take = np.concatenate([np.zeros((1, v.shape[1])), v[items_b]])[None]
            return v[items_a][:, None, :], take

        give, take = delta(x, items_hi, items_lo)
        worst = np.maximum((loads[hi] - give + take).max(-1), (loads[lo] + give - take).max(-1))
        if cost is not None:
            give_c, take_c = delta(cost, items_hi, items_lo)
            over = (
                np.maximum(
                    (cost_loads[hi] - give_c + take_c)[..., 0],
                    (cost_loads[lo] + give_c - take_c)[..., 0],
                )
                > cost_cap
            )
            worst[over] = np.inf
        if items_hi.size == 1:
            worst[:, 0] = np.inf  # never leave a device empty
        a, b = np.unravel_index(np.argmin(worst), worst.shape)
        if worst[a, b] < best:
            best = worst[a, b]
            best_change = (int(lo), items_hi[a], None if b == 0 else items_lo[b - 1])
    if best_change is None:
        return False
    lo, a, b = best_change
    for arr, val in ((loads, x), (cost_loads, cost)):
        if arr is None:
            continue
        arr[hi] -= val[a]
        arr[lo] += val[a]
        if b is not None:
            arr[lo] -= val[b]
            arr[hi] += val[b]
    owner[a] = lo
    if b is not None:
        owner[b] = hi
    return True


def load_imbalance(costs: np.ndarray, groups: Sequence[np.ndarray]) -> float:
    """max / mean of the per-device total cost (1.0 is perfect balance)."""
    loads = np.array([np.sum(np.asarray(costs)[g]) for g in groups])
    return float(loads.max() / loads.mean())
