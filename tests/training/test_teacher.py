"""Teacher-labelled data: the generator's structures, and labels equal to the PyTorch CHGNet's."""

from __future__ import annotations

import numpy as np
import pytest

from equijax.data import read_ase, split_by_group
from equijax.training.teacher import (
    MAX_ATOMS,
    MIN_ATOMS,
    SNAPSHOTS_PER_GROUP,
    generate_teacher_dataset,
    teacher_structures,
)

# The pretrained port's tolerances against torch (tests/models/test_chgnet_pretrained.py), looser
# for the rattled, strained structures here (forces up to tens of eV/Å).
TOL_E_PER_ATOM, TOL_F, TOL_S_GPA, TOL_M = 5e-5, 1e-3, 5e-3, 5e-4


def test_structures_are_deterministic_and_extend():
    small, large = teacher_structures(10, seed=3), teacher_structures(23, seed=3)
    assert len(small) == 10 and len(large) == 23
    for (a, ga), (b, gb) in zip(small, large, strict=False):
        assert ga == gb
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.numbers, b.numbers)
    other = teacher_structures(10, seed=4)
    assert any(
        len(a) != len(b) or not np.array_equal(a.positions, b.positions)
        for (a, _), (b, _) in zip(small, other, strict=True)
    )


def test_structures_are_sane_and_diverse():
    structures = teacher_structures(400)
    groups: dict[str, list] = {}
    for atoms, group in structures:
        groups.setdefault(group, []).append(atoms)
        assert MIN_ATOMS <= len(atoms) <= MAX_ATOMS
        assert atoms.pbc.all() and atoms.cell.volume > 0
        distances = atoms.get_all_distances(mic=True) + np.eye(len(atoms)) * 99
        assert distances.min() > 1.0, atoms.get_chemical_formula()
    # snapshots of a group share composition and differ in positions
    for members in groups.values():
        assert len(members) <= SNAPSHOTS_PER_GROUP
        assert all(list(m.numbers) == list(members[0].numbers) for m in members)
        if len(members) > 1:
            assert not np.allclose(members[0].positions, members[1].positions)
    elements = {s for atoms, _ in structures for s in atoms.get_chemical_symbols()}
    assert len(elements) >= 35
    assert {"Fe", "Ni", "Co", "Mn", "O"} <= elements  # magnetic oxides for the magmom head


def test_bad_count_raises_and_zero_is_empty(tmp_path):
    with pytest.raises(ValueError, match="n_structures"):
        teacher_structures(-1)
    with pytest.raises(ValueError, match="n_structures"):  # before any model is loaded
        generate_teacher_dataset(-1, cache_dir=tmp_path, potential="unused")
    assert generate_teacher_dataset(0, cache_dir=tmp_path, potential="unused") == []
    assert list(tmp_path.iterdir()) == []


def test_a_cache_with_other_structures_is_refused(tmp_path):
    from equijax.data import LabeledStructure, write_extxyz
    from equijax.training.teacher import GENERATOR_VERSION

    atoms, group = teacher_structures(1, seed=0)[0]
    stranger = LabeledStructure(id="other/0", atoms=atoms, energy=-1.0, group=group)
    write_extxyz([stranger], tmp_path / f"teacher-v{GENERATOR_VERSION}-chgnet0.3.0-seed0-n1.extxyz")
    with pytest.raises(ValueError, match="delete the file"):
        generate_teacher_dataset(1, seed=0, cache_dir=tmp_path, potential="unused")


def test_labels_equal_pytorch_chgnet_and_cache_round_trips(
    tmp_path, chgnet_potential, torch_chgnet
):
    from pymatgen.io.ase import AseAtomsAdaptor

    labelled = generate_teacher_dataset(
        12, seed=1, cache_dir=tmp_path, batch_size=6, progress=False, potential=chgnet_potential
    )
    assert [s.id for s in labelled] == [
        f"{g}/{k}" for g in ("teacher1-00000", "teacher1-00001", "teacher1-00002") for k in range(4)
    ]
    unlabelled = teacher_structures(12, seed=1)
    for s, (atoms, group) in zip(labelled, unlabelled, strict=True):
        assert s.group == group
        # the returned set is the cache file's (extxyz: 8 decimals per-atom columns)
        np.testing.assert_allclose(s.atoms.positions, atoms.positions, atol=1e-8, rtol=0)
        ref = torch_chgnet.predict_structure(AseAtomsAdaptor.get_structure(atoms), task="efsm")
        assert abs(s.energy / len(atoms) - ref["e"]) <= TOL_E_PER_ATOM, s.id
        np.testing.assert_allclose(s.forces, ref["f"], atol=TOL_F, rtol=1e-5, err_msg=s.id)
        np.testing.assert_allclose(s.stress, ref["s"], atol=TOL_S_GPA, rtol=1e-5, err_msg=s.id)
        np.testing.assert_allclose(s.magmoms, ref["m"], atol=TOL_M, rtol=0, err_msg=s.id)
    # the cache is the labelled set, and a second call reads it (no potential needed)
    (cached_file,) = tmp_path.glob("teacher-v*-chgnet0.3.0-seed1-n12.extxyz")
    again = generate_teacher_dataset(12, seed=1, cache_dir=tmp_path, potential="unused")
    for a, b, c in zip(labelled, again, read_ase(cached_file), strict=True):
        assert a.id == b.id == c.id and a.group == b.group
        np.testing.assert_allclose(b.forces, a.forces, atol=1e-8)
        np.testing.assert_allclose(b.stress, a.stress, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(b.magmoms, a.magmoms, atol=1e-8)
        assert b.energy == pytest.approx(a.energy, abs=1e-9)
    # a group's snapshots stay in one split
    train, val = split_by_group(again, [0.5, 0.5], seed=0)
    assert not {s.group for s in train} & {s.group for s in val}


def test_non_finite_teacher_label_is_refused():
    from equijax.training.teacher import _labelled

    atoms, group = teacher_structures(1, seed=0)[0]
    good = {
        "energy": -1.0,
        "forces": np.zeros((len(atoms), 3)),
        "stress": np.zeros((3, 3)),
        "magmoms": np.zeros(len(atoms)),
    }
    assert _labelled(atoms, group, f"{group}/0", good).energy == -1.0
    bad = {**good, "forces": np.full((len(atoms), 3), np.nan)}
    with pytest.raises(FloatingPointError, match="forces of teacher0-00000/0 is not finite"):
        _labelled(atoms, group, f"{group}/0", bad)
