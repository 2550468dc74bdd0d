"""Symmetries of the pretrained CHGNet `Potential`: rotation, translation, permutation and supercell
equivariance, independence of the batch a structure is predicted in, and unsupported elements."""

from __future__ import annotations

import ase
import ase.build
import numpy as np
import pytest

# jax_disable_most_optimizations (XLA backend -O0): about half the compile time; results agree
# to rounding (the tolerances here are far above it)
pytestmark = pytest.mark.usefixtures("fast_compiles")


# float32 tolerances. Stress: the small triclinic cell (37 Å³, |σ| ~ 30 GPa) shows ~5e-4 GPa of
# rounding noise between equivalent inputs, hence 2e-3 GPa (the parity test's tolerance).
TOL_E, TOL_F, TOL_S, TOL_M = 1e-5, 1e-4, 2e-3, 1e-4  # eV/atom, eV/Å, GPa, μB


def _random_rotation(rng) -> np.ndarray:
    """A random proper rotation matrix (det +1)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _bases() -> dict[str, ase.Atoms]:
    """Low-symmetry structures: a strained rattled NiO (magnetic), a triclinic 3-element cell and a
    non-periodic molecule."""
    nio = ase.build.bulk("NiO", "rocksalt", a=4.17, cubic=True)
    strain = np.array([[0.02, 0.03, 0], [0.0, -0.01, 0.02], [0.01, 0, 0.03]])
    nio.set_cell(nio.cell.array @ (np.eye(3) + strain), scale_atoms=True)
    nio.rattle(0.05, seed=11)
    triclinic = ase.Atoms(
        "LiMnO2",
        scaled_positions=[[0.0, 0.0, 0.0], [0.5, 0.45, 0.55], [0.25, 0.2, 0.3], [0.75, 0.8, 0.7]],
        cell=[[2.9, 0.0, 0.0], [0.8, 2.8, 0.0], [0.5, 0.7, 4.6]],
        pbc=True,
    )
    triclinic.rattle(0.03, seed=12)
    molecule = ase.build.molecule("CH3CH2OH")  # pbc=False, no cell
    molecule.rattle(0.05, seed=13)
    return {"NiO": nio, "LiMnO2": triclinic, "ethanol": molecule}


def _rotated(atoms, rot):
    out = atoms.copy()
    out.positions = atoms.positions @ rot.T
    if atoms.pbc.any():
        out.set_cell(atoms.cell.array @ rot.T, scale_atoms=False)
    return out


def _translated(atoms, shift):
    out = atoms.copy()
    out.positions = atoms.positions + shift
    return out


@pytest.fixture(scope="module")
def results(chgnet_potential):
    """Every base, its rotated/translated/permuted copies and 2x2x2 supercells (of the crystals),
    predicted in ONE call: ({(base, kind): prediction}, {base: {"rot": R, "perm": p}})."""
    rng = np.random.default_rng(2024)
    keys, cases, transforms = [], [], {}
    for name, atoms in _bases().items():
        rot, perm = _random_rotation(rng), rng.permutation(len(atoms))
        transforms[name] = {"rot": rot, "perm": perm}
        variants = {
            "base": atoms,
            "rotated": _rotated(atoms, rot),
            "translated": _translated(atoms, np.array([1.37, -2.71, 0.53])),
            "permuted": atoms[perm],
        }
        if atoms.pbc.all():
            variants["supercell"] = atoms.repeat(2)
        for kind, variant in variants.items():
            keys.append((name, kind))
            cases.append(variant)
    preds = chgnet_potential.predict(cases, batch_size=len(cases))
    return dict(zip(keys, preds)), transforms


def _compare(got, want, context, forces=None, stress=None, magmoms=None):
    """Assert two predictions agree (``forces``/``stress``/``magmoms`` override the expected)."""
    forces = want["forces"] if forces is None else forces
    stress = want["stress"] if stress is None else stress
    magmoms = want["magmoms"] if magmoms is None else magmoms
    assert abs(got["energy_per_atom"] - want["energy_per_atom"]) <= TOL_E, (
        f"{context}: energy/atom {got['energy_per_atom']} vs {want['energy_per_atom']}"
    )
    np.testing.assert_allclose(
        got["forces"], forces, rtol=0, atol=TOL_F, err_msg=f"{context} forces"
    )
    np.testing.assert_allclose(
        got["stress"], stress, rtol=0, atol=TOL_S, err_msg=f"{context} stress"
    )
    np.testing.assert_allclose(
        got["magmoms"], magmoms, rtol=0, atol=TOL_M, err_msg=f"{context} magmoms"
    )


@pytest.mark.parametrize("name", ["NiO", "LiMnO2", "ethanol"])
def test_outputs_are_not_trivial(results, name):
    """The base structures have sizeable forces (and stress, magmoms) so the checks below bite."""
    out, _ = results
    base, base_atoms = out[(name, "base")], _bases()[name]
    assert np.max(np.abs(base["forces"])) > 0.1
    if name != "ethanol":
        assert np.max(np.abs(base["stress"])) > 0.1
    else:
        np.testing.assert_array_equal(base["stress"], 0.0)
    if name == "NiO":
        is_ni = base_atoms.numbers == 28
        assert np.all(base["magmoms"][is_ni] > 0.5), base["magmoms"]


@pytest.mark.parametrize("name", ["NiO", "LiMnO2", "ethanol"])
def test_rotation_equivariance(results, name):
    """Rotating positions and cell: energy and magmoms invariant, F' = F R^T, σ' = R σ R^T."""
    out, transforms = results
    base, rot = out[(name, "base")], transforms[name]["rot"]
    _compare(
        out[(name, "rotated")],
        base,
        f"{name} rotated",
        forces=base["forces"] @ rot.T,
        stress=rot @ base["stress"] @ rot.T,
    )


@pytest.mark.parametrize("name", ["NiO", "LiMnO2", "ethanol"])
def test_translation_invariance(results, name):
    """Translating every atom (out of the cell, unwrapped) changes nothing."""
    out, _ = results
    _compare(out[(name, "translated")], out[(name, "base")], f"{name} translated")


@pytest.mark.parametrize("name", ["NiO", "LiMnO2", "ethanol"])
def test_permutation_equivariance(results, name):
    """Permuting the atoms permutes forces and magmoms; energy and stress are unchanged."""
    out, transforms = results
    base, perm = out[(name, "base")], transforms[name]["perm"]
    _compare(
        out[(name, "permuted")],
        base,
        f"{name} permuted",
        forces=base["forces"][perm],
        magmoms=base["magmoms"][perm],
    )


@pytest.mark.parametrize("name", ["NiO", "LiMnO2"])
def test_supercell_consistency(results, name):
    """A 2x2x2 supercell has the same energy per atom, stress and tiled forces and magmoms."""
    out, _ = results
    base, sc = out[(name, "base")], out[(name, "supercell")]
    assert np.isclose(sc["energy"], 8 * base["energy"], rtol=2e-6, atol=0)
    _compare(
        sc,
        base,
        f"{name} 2x2x2",
        forces=np.tile(base["forces"], (8, 1)),
        magmoms=np.tile(base["magmoms"], 8),
    )


def test_alone_equals_in_batch(results, chgnet_potential):
    """A structure predicted alone (small padded shape) equals its prediction inside a big batch."""
    out, _ = results
    alone = chgnet_potential.predict([_bases()["LiMnO2"], _bases()["ethanol"]])
    for name, got in zip(("LiMnO2", "ethanol"), alone):
        want = out[(name, "base")]
        # float32: different padded shapes sum in a different order (the float64 run in
        # test_chgnet_derivatives.py checks the same to ~1e-12)
        _compare(got, want, f"{name} alone vs in batch")


@pytest.mark.parametrize("z", [0, 95, 118])
def test_element_without_embedding_raises(chgnet_potential, z):
    """Atomic numbers outside CHGNet's embedding (1..94) raise ValueError, not garbage output."""
    atoms = ase.build.bulk("Si", "diamond", a=5.43)
    atoms.numbers = [14, z]
    with pytest.raises(ValueError, match="atomic number"):
        chgnet_potential.predict([ase.build.bulk("Cu", "fcc", a=3.6), atoms])
