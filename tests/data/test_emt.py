"""EMT dataset: labels agree with ASE and with finite differences; determinism, variety, baseline."""

from __future__ import annotations

import numpy as np
import pytest
from ase.calculators.emt import EMT

from equijax.data import generate_emt_dataset, per_element_linear_baseline, split_by_group


def _emt_energy(atoms) -> float:
    atoms = atoms.copy()
    atoms.calc = EMT()
    return atoms.get_potential_energy()


def _first(structures, predicate):
    return next(s for s in structures if predicate(s))


def test_stress_is_ase_stress_in_gpa_and_an_energy_derivative(emt_structures):
    """Stress (GPa) = ASE's EMT get_stress(voigt=False) * 160.21766208 = (1/V) dE/dε by central FD."""
    s = _first(emt_structures, lambda s: s.atoms.info["kind"] == "alloy" and s.stress is not None)
    atoms = s.atoms.copy()
    atoms.calc = EMT()
    np.testing.assert_allclose(
        s.stress, atoms.get_stress(voigt=False) * 160.21766208, rtol=1e-12, atol=1e-12
    )
    h, volume = 1e-5, atoms.get_volume()
    finite_difference = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            energies = []
            for sign in (1, -1):
                strain = np.eye(3)
                strain[i, j] += sign * h / 2
                strain[j, i] += sign * h / 2
                strained = s.atoms.copy()
                strained.set_cell(s.atoms.cell.array @ strain, scale_atoms=True)
                energies.append(_emt_energy(strained))
            finite_difference[i, j] = (energies[0] - energies[1]) / (2 * h) / volume * 160.21766208
    assert np.abs(s.stress).max() > 0.1
    np.testing.assert_allclose(s.stress, finite_difference, atol=1e-5)


def test_forces_are_minus_energy_gradient(emt_structures):
    """Forces equal -(E(x+h) - E(x-h)) / 2h of the EMT energy for a vacancy structure."""
    s = _first(emt_structures, lambda s: s.atoms.info["kind"] == "vacancy")
    assert s.energy == pytest.approx(_emt_energy(s.atoms), abs=1e-12)
    h = 1e-5
    for atom in range(min(4, s.n_atoms)):
        for axis in range(3):
            energies = []
            for sign in (1, -1):
                displaced = s.atoms.copy()
                displaced.positions[atom, axis] += sign * h
                energies.append(_emt_energy(displaced))
            assert s.forces[atom, axis] == pytest.approx(
                -(energies[0] - energies[1]) / (2 * h), abs=1e-6
            )


def test_compressed_cells_have_negative_stress(emt_structures):
    """Sign convention: the trace of the stress follows the volume change around EMT's minimum."""
    s = _first(emt_structures, lambda s: s.atoms.info["kind"] == "bulk")
    traces = []
    for scale in (0.95, 1.05):
        atoms = s.atoms.copy()
        atoms.set_cell(atoms.cell.array * scale, scale_atoms=True)
        atoms.calc = EMT()
        traces.append(np.trace(atoms.get_stress(voigt=False)))
    assert traces[0] < 0 < traces[1]


def test_deterministic_given_seed():
    """Same seed -> identical data; a larger request extends a smaller one; another seed differs."""
    a = generate_emt_dataset(10, seed=7, progress=False)
    b = generate_emt_dataset(6, seed=7, progress=False)
    c = generate_emt_dataset(6, seed=8, progress=False)
    for x, y in zip(a[:6], b, strict=True):
        assert x.id == y.id and x.group == y.group and x.energy == y.energy
        np.testing.assert_array_equal(x.atoms.positions, y.atoms.positions)
        np.testing.assert_array_equal(x.atoms.cell.array, y.atoms.cell.array)
        np.testing.assert_array_equal(x.forces, y.forces)
        assert (x.stress is None and y.stress is None) or np.array_equal(x.stress, y.stress)
    assert [s.energy for s in b] != [s.energy for s in c]


def test_variety(emt_structures):
    """>= 5 elements, 4..32 atoms, bulk, alloys, vacancies, open and periodic slabs, varied energies."""
    structures = emt_structures
    assert len(structures) == 64 and len({s.id for s in structures}) == 64
    elements = set().union(*(s.atoms.get_chemical_symbols() for s in structures))
    assert len(elements) >= 5 and elements <= {"Cu", "Ni", "Al", "Ag", "Au", "Pt", "Pd"}
    sizes = [s.n_atoms for s in structures]
    assert min(sizes) >= 4 and max(sizes) <= 32
    assert any(len(set(s.atoms.numbers)) >= 3 for s in structures)  # a ternary alloy
    # vacancies: one atom fewer than some bulk supercell (4 * cubic repeats or primitive repeats)
    full_sizes = {4, 8, 16, 32, 12, 18, 27}
    vacancies = [s for s in structures if s.atoms.info["kind"] == "vacancy"]
    assert vacancies and all(s.n_atoms + 1 in full_sizes for s in vacancies)
    # slabs: a vacuum gap > 10 Å along z; open ones have no stress, 3D-periodic ones do
    slabs = [s for s in structures if s.atoms.info["kind"].startswith("surface")]
    assert {s.atoms.info["kind"] for s in slabs} == {"surface111", "surface100"}
    for s in slabs:
        z = np.sort(s.atoms.positions[:, 2])
        assert s.atoms.cell[2, 2] - (z[-1] - z[0]) > 10.0
        assert (s.stress is None) == (not s.atoms.pbc[2])
    assert {bool(s.atoms.pbc[2]) for s in slabs} == {True, False}
    energies_per_atom = np.array([s.energy / s.n_atoms for s in structures])
    assert energies_per_atom.std() > 0.01
    assert {s.atoms.info["temperature_K"] for s in structures} == {300.0, 600.0, 1200.0}
    assert all(s.magmoms is None for s in structures)
    # snapshots of one trajectory share the group and differ in positions
    first, second = structures[0], structures[1]
    assert first.group == second.group and not np.allclose(
        first.atoms.positions, second.atoms.positions
    )


def test_linear_baseline(emt_structures):
    """The per-element baseline has a finite MAE > 0, equal to an independent lstsq fit's MAE."""
    train, test = split_by_group(emt_structures, (0.75, 0.25), seed=0)
    result = per_element_linear_baseline(train, test)
    assert np.isfinite(result["energy_mae_per_atom"]) and result["energy_mae_per_atom"] > 0
    assert result["force_mae_zero"] > 0
    symbols = sorted({sym for s in train for sym in s.atoms.get_chemical_symbols()})

    def features(s):
        syms = s.atoms.get_chemical_symbols()
        return [syms.count(e) / len(syms) for e in symbols]

    x = np.array([features(s) for s in train])
    w = np.linalg.lstsq(x, [s.energy / s.n_atoms for s in train], rcond=None)[0]
    mae = np.mean([abs(np.dot(features(s), w) - s.energy / s.n_atoms) for s in test])
    assert result["energy_mae_per_atom"] == pytest.approx(mae, rel=1e-9)
    all_forces = np.concatenate([s.forces.ravel() for s in test])
    assert result["force_mae_zero"] == pytest.approx(np.abs(all_forces).mean(), rel=1e-12)
    assert sorted(result["coefficients"]) == symbols


def test_baseline_rejects_unseen_elements(emt_structures):
    """A test structure with an element absent from train raises, naming the structure."""
    copper = [s for s in emt_structures if set(s.atoms.get_chemical_symbols()) == {"Cu"}]
    other = [s for s in emt_structures if "Cu" not in s.atoms.get_chemical_symbols()]
    assert copper and other
    with pytest.raises(ValueError, match=repr(other[0].id)):
        per_element_linear_baseline(copper, other)
