"""ASE readers/writers: extxyz and ase.db round-trips, labels from ASE calculators, missing labels."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms

from equijax.data import read_ase, read_ase_db, write_ase_db, write_extxyz


def assert_same_structures(got, want, *, atol=0.0, rtol=0.0):
    """Same ids, groups, numbers, pbc, and cell/positions/labels within the given tolerances."""
    assert [s.id for s in got] == [s.id for s in want]
    assert [s.group for s in got] == [s.group for s in want]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g.atoms.numbers, w.atoms.numbers, err_msg=w.id)
        np.testing.assert_array_equal(g.atoms.pbc, w.atoms.pbc, err_msg=w.id)
        np.testing.assert_array_equal(g.atoms.cell.array, w.atoms.cell.array, err_msg=w.id)
        np.testing.assert_allclose(
            g.atoms.positions, w.atoms.positions, atol=atol, rtol=0, err_msg=w.id
        )
        for name in ("energy", "forces", "stress", "magmoms"):
            gv, wv = getattr(g, name), getattr(w, name)
            assert (gv is None) == (wv is None), f"{w.id}: {name}"
            if wv is not None:
                tol = (
                    dict(atol=atol, rtol=rtol)
                    if name in ("forces", "magmoms")
                    else dict(atol=0, rtol=rtol)
                )
                np.testing.assert_allclose(gv, wv, **tol, err_msg=f"{w.id}: {name}")


def test_extxyz_round_trip(mixed_structures, tmp_path):
    """write_extxyz -> read_ase keeps ids, groups and labels (per-atom columns to ASE's 8 decimals)."""
    path = tmp_path / "data.extxyz"
    write_extxyz(mixed_structures, path)
    got = read_ase(path)
    # ASE writes per-atom columns as %16.8f: 5e-9 absolute; frame values (energy, stress) exact
    # up to the eV/Å³ <-> GPa factor.
    assert_same_structures(got, mixed_structures, atol=5e-9, rtol=2e-16 * 4)
    write_extxyz(got, tmp_path / "again.extxyz")  # a second round-trip changes nothing
    assert_same_structures(read_ase(tmp_path / "again.extxyz"), got, atol=0, rtol=2e-16 * 4)


def test_ase_db_round_trip(mixed_structures, molecule_structure, tmp_path):
    """write_ase_db -> read_ase_db is exact (stress up to the unit factor), also for molecules."""
    structures = [*mixed_structures, molecule_structure]
    path = tmp_path / "data.db"
    write_ase_db(structures, path)
    write_ase_db(structures, path)  # overwrites rather than appends
    got = read_ase_db(path)
    assert_same_structures(got, structures, rtol=2e-16 * 4)


def test_read_ase_uses_calculator_results_in_equijax_units(tmp_path):
    """Labels from ASE's own EMT results: stress = get_stress(voigt=False) * 160.21766208 GPa."""
    frames = []
    for i, a in enumerate((3.5, 3.6, 3.7)):
        atoms = bulk("Cu", "fcc", a=a, cubic=True)
        atoms.rattle(0.05, seed=i)
        atoms.calc = EMT()
        atoms.get_stress()
        frames.append(atoms)
    path = tmp_path / "cu.extxyz"
    ase.io.write(path, frames)  # ASE's writer, ASE's units
    got = read_ase(path)
    assert [s.id for s in got] == ["cu:0", "cu:1", "cu:2"]
    for s, atoms in zip(got, frames, strict=True):
        assert s.energy == pytest.approx(atoms.get_potential_energy(), abs=1e-12)
        np.testing.assert_allclose(s.forces, atoms.get_forces(), atol=5e-9)
        np.testing.assert_allclose(
            s.stress, atoms.get_stress(voigt=False) * 160.21766208, rtol=1e-12, atol=1e-12
        )
    # compressed (a=3.5) is negative, stretched (a=3.7) positive: ASE's = CHGNet's sign convention
    assert np.trace(got[0].stress) < 0 < np.trace(got[2].stress)
    assert [s.id for s in read_ase(path, index="1:")] == ["cu:1", "cu:2"]
    assert [s.id for s in read_ase(path, index=-1)] == ["cu:2"]


def test_missing_labels_are_none_and_constraints_do_not_zero_forces(tmp_path):
    """No calculator -> all labels None; energy-only -> forces None; FixAtoms keeps raw forces."""
    plain = bulk("Al", "fcc", a=4.05)
    energy_only = bulk("Ni", "fcc", a=3.52)
    energy_only.calc = SinglePointCalculator(energy_only, energy=-3.5)
    constrained = bulk("Cu", "fcc", a=3.6, cubic=True)
    forces = np.arange(12.0).reshape(4, 3)
    constrained.calc = SinglePointCalculator(constrained, energy=1.0, forces=forces)
    constrained.set_constraint(FixAtoms(indices=[0]))
    path = tmp_path / "partial.traj"
    ase.io.write(path, [plain, energy_only, constrained])
    got = read_ase(path)
    assert all(getattr(got[0], k) is None for k in ("energy", "forces", "stress", "magmoms"))
    assert got[1].energy == -3.5 and got[1].forces is None and got[1].stress is None
    np.testing.assert_array_equal(got[2].forces, forces)


def test_duplicate_ids_in_a_file_raise(tmp_path):
    """Two frames with the same info['id'] are rejected, naming the id."""
    frames = [bulk("Cu"), bulk("Cu")]
    for f in frames:
        f.info["id"] = "same"
    ase.io.write(tmp_path / "dup.extxyz", frames)
    with pytest.raises(ValueError, match="'same'"):
        read_ase(tmp_path / "dup.extxyz")
