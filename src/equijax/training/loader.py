"""A deterministic, resumable batch loader with a background prefetch thread.

The order of epoch ``e`` is a permutation drawn from ``(seed, e)``, so a run resumed at
``(epoch, step)`` sees exactly the batches an uninterrupted run would have seen. ``graphs`` and
``structures`` may be lazy sequences (an on-disk dataset's views): with ``sizes`` given, buckets
and the device split come from the stored sizes, and only the graphs of the batches (of this
process's devices, ``local_devices``) are read.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np

from equijax.graphs import BucketPolicy, CrystalGraph, GraphSizes
from equijax.training.batches import device_batch


class Loader:
    """Global batches of ``batch_size`` structures (the last partial batch of an epoch is
    dropped), split over ``n_devices`` and padded; ``wait_seconds`` accumulates the time the
    consumer spent waiting for data.

    ``sizes``: (len(graphs), 4) atoms, edges, bonds, angles per structure (default: read from
    the graphs once). ``local_devices``: the devices of the mesh whose shares this process
    reads and builds (default all; the others' slices are zeros, see `device_batch`).
    ``mean_sizes``: (4,) mean atoms, edges, bonds, angles per structure the size buckets grow
    from (default: this loader's own). Loaders given the same means and batch size pad to the
    same shapes, so e.g. the validation and test splits share one compiled evaluation step.
    ``max_structures``: with ``shuffle=False`` (evaluation), use only this many structures, the
    same seeded sample of the split every epoch in index order (0: all); see `n_used`."""

    def __init__(
        self,
        graphs: Sequence[CrystalGraph],
        structures: Sequence,
        batch_size: int,
        n_devices: int,
        seed: int,
        shuffle: bool = True,
        prefetch: int = 2,
        sizes: np.ndarray | None = None,
        local_devices: Sequence[int] | None = None,
        mean_sizes: np.ndarray | None = None,
        max_structures: int = 0,
    ):
        if len(graphs) < batch_size:
            raise ValueError(f"{len(graphs)} structures cannot fill one batch of {batch_size}")
        if batch_size < n_devices:
            raise ValueError(f"batch_size {batch_size} < {n_devices} devices")
        self.graphs, self.structures = graphs, structures
        self.batch_size, self.n_devices, self.seed = batch_size, n_devices, seed
        self.shuffle, self.prefetch = shuffle, prefetch
        if max_structures < 0 or (max_structures and shuffle):
            raise ValueError(f"max_structures {max_structures}: must be >= 0, and 0 with shuffle")
        n = len(graphs)
        self._fixed = (
            np.arange(n)
            if not max_structures or max_structures >= n
            else np.sort(np.random.default_rng([seed, n]).choice(n, max_structures, replace=False))
        )
        self._order: tuple[int, np.ndarray] | None = None  # (epoch, order) of the last epoch
        # joint buckets around the mean per-device batch: a run compiles only a few shapes
        if sizes is None:
            sizes = np.array([g.sizes[:4] for g in graphs], dtype=np.int64)
        if len(sizes) != len(graphs):
            raise ValueError(f"{len(sizes)} sizes for {len(graphs)} graphs")
        self.sizes = sizes
        self.local_devices = None if local_devices is None else list(local_devices)
        self.mean_sizes = np.asarray(
            np.mean(sizes, axis=0) if mean_sizes is None else mean_sizes, np.float64
        )
        mean = self.mean_sizes * batch_size / n_devices
        typical = GraphSizes(*[int(np.ceil(x)) for x in mean], n_graph=batch_size)
        self.policy = BucketPolicy(growth=1.2, fixed_graphs=batch_size, joint=typical)
        self.wait_seconds = 0.0

    @property
    def n_used(self) -> int:
        """Structures an epoch draws its batches from (all, or ``max_structures``)."""
        return len(self._fixed)

    @property
    def steps_per_epoch(self) -> int:
        return self.n_used // self.batch_size

    def order(self, epoch: int) -> np.ndarray:
        """The structure order of ``epoch`` (computed once per epoch)."""
        if not self.shuffle:
            return self._fixed
        if self._order is None or self._order[0] != epoch:
            perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.graphs))
            self._order = (epoch, perm)
        return self._order[1]

    def batch(self, epoch: int, step: int):
        """``(graph, targets, groups)`` of batch ``step`` of ``epoch`` (groups: structure indices
        per device)."""
        index = self.order(epoch)[step * self.batch_size : (step + 1) * self.batch_size]
        return device_batch(
            self.graphs,
            self.structures,
            index,
            self.n_devices,
            self.policy,
            sizes=self.sizes,
            local=self.local_devices,
        )

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[int, tuple]]:
        """Yield ``(step, batch)`` from ``start_step`` to the end of ``epoch``, prefetched."""
        steps = range(start_step, self.steps_per_epoch)
        if self.prefetch <= 0:
            for step in steps:
                t0 = time.perf_counter()
                item = self.batch(epoch, step)
                self.wait_seconds += time.perf_counter() - t0
                yield step, item
            return
        buffer: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def produce():
            try:
                for step in steps:
                    if stop.is_set():
                        return
                    buffer.put((step, self.batch(epoch, step)))
            except BaseException as err:  # noqa: BLE001 - re-raised in the consumer
                buffer.put(err)
            buffer.put(None)

        worker = threading.Thread(target=produce, daemon=True)
        worker.start()
        try:
            while True:
                t0 = time.perf_counter()
                item = buffer.get()
                self.wait_seconds += time.perf_counter() - t0
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while worker.is_alive():  # drain so the producer can finish
                try:
                    buffer.get(timeout=0.05)
                except queue.Empty:
                    pass
