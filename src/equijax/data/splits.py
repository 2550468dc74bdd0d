"""Train/validation/test splits by group, so that correlated structures never straddle splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from equijax.data.structures import LabeledStructure


def split_by_group(
    structures: list[LabeledStructure],
    fractions: tuple[float, ...] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> tuple[list[LabeledStructure], ...]:
    """Split ``structures`` so that every ``group`` (trajectory, mp-id) lies in exactly one split.

    The sorted distinct groups are shuffled with ``numpy.random.default_rng(seed)`` and dealt out
    by group count (as CHGNet splits MPtrj by mp-id): split k gets round(fractions[k] * n_groups)
    groups (largest remainder), at least one for every non-zero fraction. Each split keeps the
    input order. The result depends only on the groups present, ``fractions`` and ``seed``.

    Args:
        structures: the structures to split.
        fractions: non-negative, summing to 1 (one entry per split).
        seed: shuffling seed.

    Returns:
        One list per entry of ``fractions``; together they hold every structure once.

    Raises:
        ValueError: for bad fractions, or fewer groups than non-zero fractions.
    """
    groups = sorted({s.group for s in structures})
    split_of = dict(zip(groups, group_splits(groups, fractions, seed).tolist()))
    splits: tuple[list[LabeledStructure], ...] = tuple([] for _ in fractions)
    for s in structures:
        splits[split_of[s.group]].append(s)
    return splits


def group_splits(
    sorted_groups: Sequence[str], fractions: tuple[float, ...], seed: int = 0
) -> np.ndarray:
    """The split of each of ``sorted_groups`` (distinct names in Python's sort order), (n_groups,)
    int: the rule of `split_by_group`, on group names alone. Raises `ValueError` as it does."""
    fractions_arr = np.asarray(fractions, dtype=np.float64)
    if fractions_arr.ndim != 1 or fractions_arr.size == 0:
        raise ValueError(f"fractions must be a non-empty sequence, got {fractions!r}")
    if not np.isfinite(fractions_arr).all() or (fractions_arr < 0).any():
        raise ValueError(f"fractions must be finite and non-negative, got {fractions!r}")
    if abs(fractions_arr.sum() - 1.0) > 1e-6:
        raise ValueError(f"fractions must sum to 1, got {fractions!r} (sum {fractions_arr.sum()})")
    counts = _group_counts(len(sorted_groups), fractions_arr)
    order = np.random.default_rng(seed).permutation(len(sorted_groups))
    split_of = np.empty(len(sorted_groups), np.int64)
    start = 0
    for k, count in enumerate(counts):
        split_of[order[start : start + count]] = k
        start += count
    return split_of


def split_indices_by_group(
    group_index: np.ndarray,
    group_names: Sequence[str],
    fractions: tuple[float, ...] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> tuple[np.ndarray, ...]:
    """`split_by_group` without the structures: structure ``i`` has group
    ``group_names[group_index[i]]`` (``group_index`` (G,) int, e.g. an on-disk dataset's).

    Returns one sorted int64 index array per fraction; the same partition `split_by_group` makes
    of structures with these groups. Groups no structure uses are left out, as there.
    """
    group_index = np.asarray(group_index)
    used = np.unique(group_index)
    names = [group_names[g] for g in used]
    rank = np.argsort(np.array(names, dtype=object), kind="stable") if names else used
    split_sorted = group_splits([names[r] for r in rank], fractions, seed)
    split_of_used = np.empty(len(used), np.int64)
    split_of_used[rank] = split_sorted
    split_of = np.full(len(group_names), -1, np.int64)
    split_of[used] = split_of_used
    per_structure = split_of[group_index]
    return tuple(np.flatnonzero(per_structure == k) for k in range(len(fractions)))


def _group_counts(n_groups: int, fractions: np.ndarray) -> list[int]:
    """Groups per split: largest-remainder rounding, then >= 1 for every non-zero fraction."""
    nonzero = fractions > 0
    if n_groups < nonzero.sum():
        raise ValueError(
            f"cannot split {n_groups} groups into {int(nonzero.sum())} non-empty "
            f"splits (fractions {fractions.tolist()}); need at least one group each"
        )
    ideal = fractions * n_groups
    counts = np.floor(ideal).astype(int)
    by_remainder = np.argsort(-(ideal - counts), kind="stable")
    counts[by_remainder[: n_groups - counts.sum()]] += 1
    for k in np.flatnonzero(nonzero & (counts == 0)):
        donor = int(np.argmax(counts))  # has >= 2 groups, since n_groups >= number of non-zero
        counts[donor] -= 1
        counts[k] += 1
    return counts.tolist()
