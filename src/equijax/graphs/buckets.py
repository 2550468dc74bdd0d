"""Size buckets: pad batches to a few static shapes so a training run compiles only a handful
of times, and measure what the padding costs."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence

import numpy as np

from equijax.graphs.batching import batch_graphs, pad_graph
from equijax.graphs.crystal_graph import CrystalGraph, GraphSizes

# Extra room each dimension needs beyond the real count (see `pad_graph`).
_MIN_EXTRA = GraphSizes(n_node=1, n_edge=2, n_bond=1, n_angle=1, n_graph=1)


@dataclasses.dataclass(frozen=True)
class BucketPolicy:
    """Geometric size buckets: each dimension is rounded up to ``round_up(minimum * growth**k,
    multiple)``, the smallest such value with room for the padding graph.

    ``growth=1.25`` wastes at most 20% (about 10% on average) per dimension and yields about
    ``log(max/min) / log(1.25)`` sizes per dimension. ``n_graph`` is rounded to exactly
    ``graphs + 1`` when ``fixed_graphs`` is set (the usual fixed batch size).

    With ``joint`` (typical sizes of a batch, e.g. the dataset mean times the batch size), all
    dimensions grow together: the bucket is ``joint * growth**k`` (each rounded up to
    ``multiple``) for the smallest ``k`` that fits every dimension, so a training run sees only a few shapes in total instead of a product of
    per-dimension ladders.
    """

    growth: float = 1.25
    multiple: int = 16
    minimum: int = 16
    fixed_graphs: int | None = None
    joint: GraphSizes | None = None

    def __post_init__(self):
        if self.growth <= 1.0:
            raise ValueError(f"growth must be > 1, got {self.growth}")
        if self.multiple < 2 or self.multiple % 2:
            raise ValueError(f"multiple must be even and >= 2, got {self.multiple}")

    def round(self, n: int) -> int:
        """The smallest bucket size >= n."""
        if n <= self.minimum:
            return _round_up(self.minimum, self.multiple)
        k = max(0, math.floor(math.log(n / self.minimum) / math.log(self.growth)))
        while True:
            size = _round_up(math.ceil(self.minimum * self.growth**k), self.multiple)
            if size >= n:
                return size
            k += 1

    def sizes_for(self, real: GraphSizes) -> GraphSizes:
        """Bucket sizes for a batch of the given real sizes."""
        need = [r + e for r, e in zip(real, _MIN_EXTRA)]
        if self.joint is not None:
            base = [max(float(b), 1.0) for b in self.joint[:4]]
            k = 0  # the smallest rung whose rounded sizes fit (a few dozen rungs at most)
            while True:
                scaled = [_round_up(math.ceil(b * self.growth**k), self.multiple) for b in base]
                if all(s >= n for s, n in zip(scaled, need[:4])):
                    break
                k += 1
            out = scaled + [self.round(need[4])]
        else:
            out = [self.round(n) for n in need]
        if self.fixed_graphs is not None:
            if real.n_graph > self.fixed_graphs:
                raise ValueError(
                    f"batch has {real.n_graph} graphs > fixed_graphs={self.fixed_graphs}"
                )
            out[-1] = self.fixed_graphs + 1
        return GraphSizes(*out)


def _round_up(n: int, multiple: int) -> int:
    return -(-int(n) // multiple) * multiple


def max_sizes(sizes: Iterable[GraphSizes]) -> GraphSizes:
    """Elementwise maximum: the common shape of per-device batches under `shard_map`."""
    return GraphSizes(*np.max(np.array(list(sizes)), axis=0).tolist())


def pad_batch(
    graphs: Sequence[CrystalGraph], policy: BucketPolicy, sizes: GraphSizes | None = None
) -> tuple[CrystalGraph, GraphSizes]:
    """Batch graphs and pad them to the policy's bucket (or to ``sizes`` if given).

    Returns the padded graph and the real (unpadded) sizes, for `padding_fraction`.
    """
    batched = batch_graphs(graphs)
    real = batched.sizes
    return pad_graph(batched, sizes or policy.sizes_for(real)), real


def padding_fraction(real: Sequence[GraphSizes], padded: Sequence[GraphSizes]) -> dict[str, float]:
    """Fraction of padded slots per dimension, summed over batches: 1 - real / padded."""
    r = np.sum(np.array(real, dtype=np.float64), axis=0)
    p = np.sum(np.array(padded, dtype=np.float64), axis=0)
    return {f: float(1.0 - r[i] / p[i]) for i, f in enumerate(GraphSizes._fields)}
