"""Load balancing: split graphs into per-device batches of nearly equal estimated cost
(as FastCHGNet does for multi-GPU training).

Under `shard_map` every device runs the same padded shape, so balancing the real work also
minimises the common bucket all devices are padded to.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import numpy as np

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
        raise ValueError(f"need at least 4 measurements to fit 4 coefficients, got {counts.shape[0]}")
    from scipy.optimize import nnls  # scipy comes with ase

    design = np.concatenate([np.ones((counts.shape[0], 1)), counts], axis=1)
    # Columns differ by orders of magnitude (1 vs 1e4 angles): solve on unit-norm columns.
    norms = np.linalg.norm(design, axis=0)
    norms[norms == 0] = 1.0
    coef = nnls(design / norms, seconds)[0] / norms
    return CostModel(per_atom=float(coef[1]), per_edge=float(coef[2]), per_angle=float(coef[3]),
                     per_batch=float(coef[0]))


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
    import jax

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


def split_balanced(costs: np.ndarray, n_devices: int, max_rounds: int = 1000) -> list[np.ndarray]:
    """Partition item indices into ``n_devices`` groups of nearly equal total cost.

    Longest-processing-time greedy assignment, then moves and swaps between the most and least
    loaded devices while they lower the maximum load. Returns index arrays (sorted).
    """
    costs = np.asarray(costs, dtype=np.float64)
    if n_devices < 1:
        raise ValueError(f"n_devices must be >= 1, got {n_devices}")
    if costs.size < n_devices:
        raise ValueError(f"cannot split {costs.size} graphs over {n_devices} devices")
    if not np.isfinite(costs).all() or (costs < 0).any():
        raise ValueError("costs must be finite and non-negative")
    owner = np.empty(costs.size, dtype=np.int64)
    loads = np.zeros(n_devices)
    counts = np.zeros(n_devices, dtype=np.int64)
    for k in np.argsort(-costs, kind="stable"):
        d = int(np.lexsort((counts, loads))[0])  # least loaded; ties: fewest graphs
        owner[k] = d
        loads[d] += costs[k]
        counts[d] += 1
    for _ in range(max_rounds):
        hi, lo = int(np.argmax(loads)), int(np.argmin(loads))
        gap = loads[hi] - loads[lo]
        if gap <= 0:
            break
        items_hi = np.flatnonzero(owner == hi)
        items_lo = np.flatnonzero(owner == lo)
        # Moving delta from hi to lo lowers the pair's maximum iff 0 < delta < gap; best is gap/2.
        best, best_move = gap, None
        if items_hi.size > 1:
            deltas = costs[items_hi]
            k = int(np.argmin(np.abs(deltas - gap / 2)))
            if 0 < deltas[k] < gap and abs(deltas[k] - gap / 2) < abs(best - gap / 2):
                best, best_move = deltas[k], (items_hi[k], None)
        deltas = costs[items_hi][:, None] - costs[items_lo][None, :]
        k = np.unravel_index(np.argmin(np.abs(deltas - gap / 2)), deltas.shape)
        if 0 < deltas[k] < gap and abs(deltas[k] - gap / 2) < abs(best - gap / 2):
            best, best_move = deltas[k], (items_hi[k[0]], items_lo[k[1]])
        if best_move is None:
            break
        a, b = best_move
        owner[a] = lo
        if b is not None:
            owner[b] = hi
        loads[hi] -= best
        loads[lo] += best
    return [np.flatnonzero(owner == d) for d in range(n_devices)]


def load_imbalance(costs: np.ndarray, groups: Sequence[np.ndarray]) -> float:
    """max / mean of the per-device total cost (1.0 is perfect balance)."""
    loads = np.array([np.sum(np.asarray(costs)[g]) for g in groups])
    return float(loads.max() / loads.mean())
