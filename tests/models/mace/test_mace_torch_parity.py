"""MACE against mace-torch models with random weights: max_ell 1-3, correlation 1-3, 1-3 layers,
hidden irreps with and without l=2, both first-block types, 2-5 elements, MACE and
ScaleShiftMACE; float32 here, float64 (with finite differences) in a subprocess."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import ase
import ase.build
import numpy as np
import pytest
from mace_reference import mace_model, mace_predict

from equijax.graphs import BucketPolicy
from equijax.models.mace import from_torch
from equijax.potential import Potential

POLICY = BucketPolicy(growth=2.0, multiple=32, minimum=32)
CONFIGS = {
    "l1-c1-one-layer-2el-plain": dict(
        max_ell=1, correlation=1, num_interactions=1, hidden_irreps="8x0e+8x1o",
        first="plain", atomic_numbers=(1, 8),
    ),
    "l2-c2-two-layers-3el-l2-hidden": dict(
        max_ell=2, correlation=2, num_interactions=2, hidden_irreps="6x0e+6x1o+6x2e",
        first="residual", atomic_numbers=(1, 8, 29),
    ),
    "l3-c3-two-layers-4el-plain-first": dict(
        max_ell=3, correlation=3, num_interactions=2, hidden_irreps="8x0e+8x1o",
        first="plain", atomic_numbers=(1, 6, 8, 29), scale_shift=False,
    ),
    "l3-c3-three-layers-5el-l2-hidden": dict(
        max_ell=3, correlation=[3, 2, 1], num_interactions=3, hidden_irreps="4x0e+4x1o+4x2e",
        first="residual", atomic_numbers=(1, 6, 8, 13, 29),
    ),
    "l2-c3-scalars-only": dict(
        max_ell=2, correlation=3, num_interactions=2, hidden_irreps="8x0e",
        first="residual", atomic_numbers=(1, 8, 29),
    ),
}  # fmt: skip


def structures(numbers) -> list[ase.Atoms]:
    """A rattled 4-atom fcc cell, a 2-atom triclinic cell (both periodic, elements cycling
    through ``numbers``) and a water molecule."""
    crystal = ase.build.bulk("Cu", "fcc", a=3.6, cubic=True)
    crystal.numbers = [numbers[i % len(numbers)] for i in range(4)]
    crystal.rattle(0.1, seed=3)
    skewed = ase.Atoms(
        numbers=[numbers[-1], numbers[0]],
        scaled_positions=[[0, 0, 0], [0.45, 0.5, 0.55]],
        cell=[[2.7, 0, 0], [0.9, 2.6, 0], [0.4, 0.8, 2.9]],
        pbc=True,
    )
    return [crystal, skewed, ase.build.molecule("H2O")]


def compare(got, want, atoms, tol_e, tol_f, label):
    for a, g, w in zip(atoms, got, want):
        assert abs(g["energy"] - w["energy"]) <= tol_e * len(a), (label, g["energy"], w["energy"])
        f_scale = max(1.0, np.abs(w["forces"]).max())
        np.testing.assert_allclose(g["forces"], w["forces"], atol=tol_f * f_scale, err_msg=label)
        s_scale = max(1.0, np.abs(w["stress"]).max())
        np.testing.assert_allclose(g["stress"], w["stress"], atol=tol_f * s_scale, err_msg=label)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_mace_torch_float32(name):
    """|ΔE| ≤ 2e-5 eV/atom, |ΔF| ≤ 1e-4 max|F| (and the same for stress)."""
    model = mace_model(**CONFIGS[name])
    atoms = structures(CONFIGS[name]["atomic_numbers"])
    want = mace_predict(model, atoms)
    module, params = from_torch(model)
    got = Potential(module, params, policy=POLICY).predict(atoms, batch_size=len(atoms))
    compare(got, want, atoms, 2e-5, 1e-4, name)


H = 1e-5  # float64 central-difference step (Å, and strain)

X64_SCRIPT = r"""
import jax
jax.config.update("jax_enable_x64", True)
import pickle, sys
import numpy as np
sys.path.insert(0, sys.argv[3])
from mace_reference import mace_model, mace_predict
from equijax.graphs import BucketPolicy
from equijax.models.mace import from_torch
from equijax.potential import Potential

with open(sys.argv[1], "rb") as f:
    jobs = pickle.load(f)
results = {}
for name, (config, atoms) in jobs.items():
    model = mace_model(**config, dtype="float64")
    want = mace_predict(model, atoms[:3], dtype="float64")
    module, params = from_torch(model, dtype=np.float64)
    policy = BucketPolicy(growth=2.0, multiple=32, minimum=32)
    got = Potential(module, params, policy=policy).predict(atoms, batch_size=len(atoms))
    assert got[0]["forces"].dtype == np.float64
    results[name] = (got, want)
with open(sys.argv[2], "wb") as f:
    pickle.dump(results, f)
"""

X64_CONFIGS = ["l3-c3-two-layers-4el-plain-first", "l3-c3-three-layers-5el-l2-hidden"]


def displaced(atoms: ase.Atoms) -> list[ase.Atoms]:
    """±H moves of atom 0 along x, then ±H strains εxx and εxy."""
    out = []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.positions[0, 0] += sign * H
        out.append(moved)
    for i, j in ((0, 0), (0, 1)):
        for sign in (1, -1):
            strain = np.eye(3)
            strain[i, j] += sign * H / (2 if i != j else 1)
            strain[j, i] += sign * H / 2 if i != j else 0.0
            strained = atoms.copy()
            strained.set_cell(atoms.cell @ strain, scale_atoms=True)
            out.append(strained)
    return out


@pytest.fixture(scope="module")
def x64(tmp_path_factory):
    """Float64 equijax and mace-torch predictions, run in a subprocess (x64 is global)."""
    jobs = {}
    for name in X64_CONFIGS:
        atoms = structures(CONFIGS[name]["atomic_numbers"])
        jobs[name] = (CONFIGS[name], atoms + displaced(atoms[0]))
    folder = tmp_path_factory.mktemp("x64")
    job, result = folder / "job.pkl", folder / "result.pkl"
    job.write_bytes(pickle.dumps(jobs))
    here = os.path.dirname(__file__)
    proc = subprocess.run(
        [sys.executable, "-c", X64_SCRIPT, str(job), str(result), here],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return jobs, pickle.loads(result.read_bytes())


@pytest.mark.parametrize("name", X64_CONFIGS)
def test_matches_mace_torch_float64(x64, name):
    """Float64 against mace-torch in float64: ≤ 1e-9."""
    jobs, results = x64
    got, want = results[name]
    compare(got[:3], want, jobs[name][1][:3], 1e-9, 1e-9, name)


@pytest.mark.parametrize("name", X64_CONFIGS)
def test_float64_derivatives_match_finite_differences(x64, name):
    """F = -dE/dr and σ = (1/V) dE/dε against central differences of the float64 energy."""
    jobs, results = x64
    got = results[name][0]
    base, base_out, moved = jobs[name][1][0], got[0], got[3:]
    fd_force = -(moved[0]["energy"] - moved[1]["energy"]) / (2 * H)
    assert abs(fd_force - base_out["forces"][0, 0]) < 1e-6
    for k, (i, j) in enumerate(((0, 0), (0, 1))):
        plus, minus = moved[2 + 2 * k], moved[3 + 2 * k]
        fd = (plus["energy"] - minus["energy"]) / (2 * H) / base.get_volume() * 160.21766208
        assert abs(fd - base_out["stress"][i, j]) < 1e-5, (i, j)
