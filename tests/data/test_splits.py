"""split_by_group: no group in two splits, full coverage, determinism, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from equijax.data import LabeledStructure, split_by_group


def _structures(group_sizes):
    atoms = bulk("Cu")
    return [
        LabeledStructure(id=f"g{g}/{k}", atoms=atoms, group=f"g{g}")
        for g, size in enumerate(group_sizes)
        for k in range(size)
    ]


def test_no_leakage_and_full_coverage():
    """Every structure lands in exactly one split and every group in exactly one split."""
    rng = np.random.default_rng(0)
    structures = _structures(rng.integers(1, 6, size=40))
    splits = split_by_group(structures, (0.8, 0.1, 0.1), seed=3)
    ids = [s.id for split in splits for s in split]
    assert sorted(ids) == sorted(s.id for s in structures)
    groups = [{s.group for s in split} for split in splits]
    assert all(not (a & b) for i, a in enumerate(groups) for b in groups[i + 1 :])
    assert [len(g) for g in groups] == [32, 4, 4]
    for split in splits:  # input order is kept within a split
        positions = [structures.index(s) for s in split]
        assert positions == sorted(positions)


def test_deterministic_and_order_independent():
    """Same seed -> same split, whatever the input order; another seed -> another split."""
    structures = _structures([2] * 20)
    a = split_by_group(structures, seed=1)
    b = split_by_group(structures[::-1], seed=1)
    c = split_by_group(structures, seed=2)
    assert [sorted(s.id for s in x) for x in a] == [sorted(s.id for s in x) for x in b]
    assert [[s.id for s in x] for x in a] != [[s.id for s in x] for x in c]


def test_small_sets_fill_every_nonzero_split():
    """3 groups and (0.8, 0.1, 0.1) give one group each; a zero fraction gives an empty split."""
    splits = split_by_group(_structures([3, 1, 2]), (0.8, 0.1, 0.1))
    assert all(len({s.group for s in split}) == 1 for split in splits)
    train, empty, test = split_by_group(_structures([1, 1, 1, 1]), (0.5, 0.0, 0.5))
    assert empty == [] and len(train) == 2 and len(test) == 2


@pytest.mark.parametrize(
    "fractions, message",
    [
        ((0.8, 0.1), "sum to 1"),
        ((1.2, -0.2), "non-negative"),
        ((), "non-empty"),
    ],
)
def test_bad_fractions_raise(fractions, message):
    """Fractions that are negative, empty or do not sum to 1 raise ValueError."""
    with pytest.raises(ValueError, match=message):
        split_by_group(_structures([1, 1, 1]), fractions)


def test_too_few_groups_raise():
    """Two groups cannot fill three non-empty splits: a clear ValueError."""
    with pytest.raises(ValueError, match="cannot split 2 groups into 3 non-empty splits"):
        split_by_group(_structures([5, 5]), (0.8, 0.1, 0.1))


def test_split_indices_by_group_equals_split_by_group(emt_structures):
    """The group-index split of an on-disk dataset is the partition `split_by_group` makes."""
    from equijax.data.splits import split_indices_by_group

    names = sorted({s.group for s in emt_structures}, reverse=True)  # any order of names
    names.append("unused-group")
    index = np.array([names.index(s.group) for s in emt_structures])
    for seed in (0, 3):
        for fractions in ((0.8, 0.1, 0.1), (0.5, 0.5)):
            want = split_by_group(emt_structures, fractions, seed=seed)
            got = split_indices_by_group(index, names, fractions, seed=seed)
            assert [[emt_structures[i].id for i in part] for part in got] == [
                [s.id for s in part] for part in want
            ]
