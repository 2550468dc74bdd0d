"""Forces and stress of the pretrained CHGNet `Potential` against central finite differences of its
energy, smoothness of energy and forces where a neighbour crosses the 6 Å atom cutoff or the 3 Å
bond cutoff, and batch independence, all in float64 (one subprocess with ``jax_enable_x64``)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import ase
import ase.build
import numpy as np
import pytest

from equijax.graphs import atoms_to_graph

EV_PER_A3_TO_GPA = 160.21766208
H_POS = 1e-5  # Å, central-difference step for forces
H_STRAIN = 1e-5  # dimensionless, central-difference step for stress
# Å, distance from the cutoff in the smoothness checks. Not 1e-4: the slope alone (|F| ~ 2 eV/Å)
# then moves E by ~4e-4 eV and F by ~1.5e-3 eV/Å between ±δ, and the 31 Bessel frequencies (up to
# ~16/Å) make the one-sided extrapolation below inaccurate at that step.
DELTA = 5e-8

X64_SCRIPT = r"""
import jax
jax.config.update("jax_enable_x64", True)
import pickle, sys
import numpy as np
from equijax.graphs import BucketPolicy
from equijax.models.chgnet.pretrained import from_pretrained
from equijax.potential import Potential

with open(sys.argv[1], "rb") as f:
    job = pickle.load(f)
module, params = from_pretrained("0.3.0", dtype=np.float64)
potential = Potential(module, params, policy=BucketPolicy(growth=2.0, multiple=64, minimum=64))
batch = potential.predict(job["batch"], batch_size=len(job["batch"]))
alone = potential.predict(job["alone"], batch_size=len(job["alone"]))
assert batch[0]["forces"].dtype == np.float64
with open(sys.argv[2], "wb") as f:
    pickle.dump({"batch": batch, "alone": alone, "shapes": len(potential.compiled_shapes)}, f)
"""

# jax_disable_most_optimizations in the float64 subprocess (XLA backend -O0, LLVM's expensive
# passes off): about half the compile time; results agree to float64 rounding
FAST_COMPILE_ENV = {**os.environ, "JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}


def _crystal() -> ase.Atoms:
    """A rattled triclinic LiMnO2 cell (4 atoms, every neighbour shell populated by images)."""
    atoms = ase.Atoms(
        "LiMnO2",
        scaled_positions=[[0.0, 0.0, 0.0], [0.5, 0.45, 0.55], [0.25, 0.2, 0.3], [0.75, 0.8, 0.7]],
        cell=[[2.9, 0.0, 0.0], [0.8, 2.8, 0.0], [0.5, 0.7, 4.6]],
        pbc=True,
    )
    atoms.rattle(0.03, seed=21)
    return atoms


def _slab() -> ase.Atoms:
    """A rattled Cu(111) slab periodic in x and y only (mixed pbc)."""
    atoms = ase.build.fcc111("Cu", size=(2, 2, 2), vacuum=5.0)
    atoms.pbc = (True, True, False)
    atoms.rattle(0.05, seed=22)
    atoms.info.clear()
    return atoms


def _molecule() -> ase.Atoms:
    """A rattled ethanol molecule, pbc=False and no cell."""
    atoms = ase.build.molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=23)
    atoms.info.clear()
    return atoms


def _atom_cutoff_geometry(x: float) -> ase.Atoms:
    """4 atoms (no pbc): A-C is x Å (crossing 6 Å); other distances are far from 3 and 6 Å."""
    return ase.Atoms("CSiOSi", positions=[[0, 0, 0], [4.0, 1.0, 0], [x, 0, 0], [6.0, 2.0, 0.3]])


def _bond_cutoff_geometry(y: float) -> ase.Atoms:
    """3 atoms (no pbc): A-B 2 Å, A-C = y Å (crossing 3 Å, so the angle B-A-C appears)."""
    direction = np.array([0.1, 1.0, 0.2]) / np.linalg.norm([0.1, 1.0, 0.2])
    return ase.Atoms("SiOC", positions=[[0, 0, 0], [2.0, 0, 0], y * direction])


def _bond_length(atoms: ase.Atoms, i: int, j: int) -> float:
    return float(np.linalg.norm(atoms.positions[i] - atoms.positions[j]))


# (structure, atom indices whose forces are checked against finite differences)
FORCE_CASES = {
    "crystal": (_crystal, [0, 1, 2, 3]),
    "slab": (_slab, [0, 5]),
    "molecule": (_molecule, [0, 2, 5]),
}
STRESS_CASES = {"crystal": _crystal, "slab": _slab}
# A-C length on both sides of the cutoff (±δ, ±2δ, ±3δ), plus one well inside
CUTOFF_SCAN = {"atom": (_atom_cutoff_geometry, 6.0, 5.7), "bond": (_bond_cutoff_geometry, 3.0, 2.7)}
SCAN_OFFSETS = tuple(k * DELTA for k in (-3, -2, -1, 1, 2, 3))


def _strained(atoms: ase.Atoms, i: int, j: int, h: float) -> ase.Atoms:
    """``atoms`` with cell and positions multiplied by ``1 + h S`` (S symmetric, S_ij = S_ji)."""
    strain = np.zeros((3, 3))
    strain[i, j] += h / 2
    strain[j, i] += h / 2
    out = atoms.copy()
    deform = np.eye(3) + strain
    out.positions = atoms.positions @ deform
    out.set_cell(atoms.cell.array @ deform, scale_atoms=False)
    return out


def _jobs():
    """Every structure of the float64 run, in one list, with a key for each."""
    keys, structures = [], []

    def add(key, atoms):
        keys.append(key)
        structures.append(atoms)

    for name, (make, indices) in FORCE_CASES.items():
        add(("base", name), make())
        for a in indices:
            for d in range(3):
                for sign in (1, -1):
                    atoms = make()
                    atoms.positions[a, d] += sign * H_POS
                    add(("disp", name, a, d, sign), atoms)
    for name, make in STRESS_CASES.items():
        for i in range(3):
            for j in range(i, 3):
                for sign in (1, -1):
                    add(("strain", name, i, j, sign), _strained(make(), i, j, sign * H_STRAIN))
    for kind, (make, cutoff, inside) in CUTOFF_SCAN.items():
        for offset in SCAN_OFFSETS:
            add(("scan", kind, offset), make(cutoff + offset))
        add(("scan", kind, "inside"), make(inside))
    return keys, structures


@pytest.fixture(scope="module")
def x64(tmp_path_factory):
    """Run every structure through the float64 `Potential` in a subprocess (two compiled shapes:
    the whole batch, and the base structures alone)."""
    keys, structures = _jobs()
    alone = [FORCE_CASES[name][0]() for name in ("crystal", "molecule")]
    folder = tmp_path_factory.mktemp("x64")
    job, result = folder / "job.pkl", folder / "result.pkl"
    with open(job, "wb") as f:
        pickle.dump({"batch": structures, "alone": alone}, f)
    proc = subprocess.run(
        [sys.executable, "-c", X64_SCRIPT, str(job), str(result)],
        capture_output=True,
        text=True,
        timeout=600,
        env=FAST_COMPILE_ENV,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    with open(result, "rb") as f:
        out = pickle.load(f)
    return dict(zip(keys, out["batch"])), out["alone"], dict(zip(keys, structures))


@pytest.mark.parametrize("name", list(FORCE_CASES))
def test_forces_match_finite_differences(x64, name):
    """F = -dE/dr: analytic forces equal central differences of the energy (float64)."""
    preds, _, _ = x64
    forces = preds[("base", name)]["forces"]
    assert forces.dtype == np.float64
    _, indices = FORCE_CASES[name]
    numeric = np.array(
        [
            [
                -(
                    preds[("disp", name, a, d, 1)]["energy"]
                    - preds[("disp", name, a, d, -1)]["energy"]
                )
                / (2 * H_POS)
                for d in range(3)
            ]
            for a in indices
        ]
    )
    analytic = forces[indices]
    assert np.max(np.abs(analytic)) > 0.05, analytic  # non-trivial forces
    err = np.max(np.abs(numeric - analytic))
    print(f"{name}: max |F - F_fd| = {err:.3g} eV/Å (max |F| {np.max(np.abs(analytic)):.3g})")
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("name", list(STRESS_CASES))
def test_stress_matches_finite_differences(x64, name):
    """σ_ij = (1/V) dE/dε_ij (symmetric strain, scaled positions fixed), in GPa, float64."""
    preds, _, _ = x64
    base = STRESS_CASES[name]()
    volume = abs(np.linalg.det(base.cell.array))
    numeric = np.zeros((3, 3))
    for i in range(3):
        for j in range(i, 3):
            plus, minus = preds[("strain", name, i, j, 1)], preds[("strain", name, i, j, -1)]
            de = plus["energy"] - minus["energy"]
            numeric[i, j] = numeric[j, i] = de / (2 * H_STRAIN) / volume * EV_PER_A3_TO_GPA
    stress = preds[("base", name)]["stress"]
    assert np.max(np.abs(stress)) > 0.5, stress
    err = np.max(np.abs(stress - numeric))
    print(f"{name}: max |σ - σ_fd| = {err:.3g} GPa (max |σ| {np.max(np.abs(stress)):.3g})")
    np.testing.assert_allclose(stress, numeric, rtol=1e-6, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("kind", list(CUTOFF_SCAN))
def test_smooth_across_cutoff(x64, kind):
    """Energy and forces have no jump as a distance crosses the 6 Å / 3 Å cutoff (float64)."""
    preds, _, structures = x64
    make, cutoff, inside = CUTOFF_SCAN[kind]
    for o in SCAN_OFFSETS:  # the scanned distance really straddles the cutoff
        assert np.isclose(_bond_length(structures[("scan", kind, o)], 0, 2), cutoff + o, atol=1e-12)
    below, above = (atoms_to_graph(make(cutoff + o)).sizes for o in (-DELTA, DELTA))
    if kind == "atom":  # the A-C edge pair (and nothing else) disappears
        assert below.n_edge == above.n_edge + 2 and below.n_angle == above.n_angle, (below, above)
    else:  # the A-C bond and the two B-A-C angles disappear from the bond graph
        assert below.n_bond == above.n_bond + 1, (below, above)
        assert below.n_angle == above.n_angle + 2, (below, above)
    e = {o: preds[("scan", kind, o)]["energy"] for o in SCAN_OFFSETS}
    f = {o: preds[("scan", kind, o)]["forces"] for o in SCAN_OFFSETS}

    # Quadratic extrapolation from each side to the cutoff: smooth variation cancels (to O(δ³)),
    # a jump in the value survives whatever δ is.
    def jump(v):
        left = 3 * v[-DELTA] - 3 * v[-2 * DELTA] + v[-3 * DELTA]
        right = 3 * v[DELTA] - 3 * v[2 * DELTA] + v[3 * DELTA]
        return np.max(np.abs(left - right))

    e_jump, f_jump = jump(e), jump(f)
    e_step, f_step = abs(e[DELTA] - e[-DELTA]), np.max(np.abs(f[DELTA] - f[-DELTA]))
    e_wide = abs(preds[("scan", kind, "inside")]["energy"] - e[DELTA])
    f_wide = np.max(np.abs(preds[("scan", kind, "inside")]["forces"] - f[DELTA]))
    print(
        f"{kind} cutoff: jump E {e_jump:.3g} eV, F {f_jump:.3g} eV/Å; raw step ±{DELTA} Å: "
        f"E {e_step:.3g}, F {f_step:.3g}; {inside} Å vs cutoff: E {e_wide:.3g}, F {f_wide:.3g}"
    )
    assert e_jump < 1e-10 and f_jump < 1e-9, (e_jump, f_jump)
    assert e_step < 1e-6 and f_step < 1e-5, (e_step, f_step)
    assert e_wide > 1e-2 and f_wide > 1e-1, (e_wide, f_wide)  # the energy is not trivially flat


def test_padding_and_batch_do_not_contribute(x64):
    """Predicting structures alone or in a large batch agrees to float64 rounding."""
    preds, alone, _ = x64
    for name, got in zip(("crystal", "molecule"), alone):
        want = preds[("base", name)]
        keys = ("forces", "stress", "magmoms")
        worst = max(float(np.max(np.abs(got[k] - want[k]))) for k in keys)
        print(
            f"{name}: alone vs batch |ΔE| {abs(got['energy'] - want['energy']):.3g}, "
            f"max |Δ| of F, σ, m {worst:.3g}"
        )
        assert abs(got["energy"] - want["energy"]) < 1e-10, name
        for key in ("forces", "stress", "magmoms"):
            np.testing.assert_allclose(
                got[key], want[key], rtol=0, atol=1e-10, err_msg=f"{name} {key}"
            )
