"""The pretrained SevenNet models against sevenn itself: energy, forces and stress on benchmark
structures and hard cases in float32 (both models) and float64 (SevenNet-0); float64 forces and
stress against finite differences; rotation invariance; conversion (every tensor maps) and the
orbax cache."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import ase
import ase.build
import jax
import numpy as np
import pytest
from sevenn_reference import float64_model, sevenn_predict

from equijax.graphs import BucketPolicy
from equijax.models import registry
from equijax.models.nequip import pretrained as nequip_pretrained
from equijax.models.nequip.convert import convert_state_dict, load_sevenn_checkpoint
from equijax.potential import Potential

TOL_E_PER_ATOM, TOL_F, TOL_S_GPA = 2e-5, 2e-4, 2e-3  # float32, the bounds
TOL_64 = 1e-9
COARSE = BucketPolicy(growth=2.0, multiple=64, minimum=64)
H = 1e-5  # float64 central-difference step (Å, and strain)


def hard_cases() -> dict[str, ase.Atoms]:
    """Small structures where conventions show: a one-atom skewed cell (many images within the
    cutoff), a molecule without periodicity, a pair just inside the 5 Å cutoff, a slab."""
    skewed = ase.Atoms(
        "Cu",
        positions=[[0.1, 0.2, 0.3]],
        cell=[[2.5, 0, 0], [1.2, 2.3, 0], [0.7, 0.9, 2.2]],
        pbc=True,
    )
    molecule = ase.build.molecule("CH3CH2OH")
    molecule.rattle(0.05, seed=4)
    boundary = ase.Atoms(
        "SiO", positions=[[1.0, 1.0, 1.0], [5.9999, 1.0, 1.0]], cell=[11.0, 11.0, 11.0], pbc=True
    )
    slab = ase.build.fcc111("Pt", size=(2, 2, 3), vacuum=6.0)
    slab[0].symbol = "Ni"
    slab.rattle(0.05, seed=5)
    return {"skewed": skewed, "molecule": molecule, "boundary": boundary, "slab": slab}


@pytest.fixture(scope="module")
def structures(bench_structures) -> dict[str, ase.Atoms]:
    """Six of the smallest benchmark structures plus the hard cases."""
    small = sorted(range(len(bench_structures)), key=lambda i: len(bench_structures[i]))[:6]
    picked = {f"bench{i}": bench_structures[i] for i in small}
    return {**picked, **hard_cases()}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("equijax_cache")


@pytest.fixture(scope="module")
def sevenn_models():
    """sevenn's own models, by equijax name."""
    from sevenn.util import model_from_checkpoint

    return {
        name: model_from_checkpoint(sevenn)
        for name, sevenn in nequip_pretrained.SEVENN_NAMES.items()
    }


def _compare(got: dict, want: dict, atoms: ase.Atoms, tol_e, tol_f, tol_s, label: str):
    n = len(atoms)
    assert abs(got["energy"] - want["energy"]) / n <= tol_e, label
    np.testing.assert_allclose(got["forces"], want["forces"], rtol=0, atol=tol_f, err_msg=label)
    if atoms.pbc.all():
        np.testing.assert_allclose(got["stress"], want["stress"], rtol=0, atol=tol_s, err_msg=label)


@pytest.mark.parametrize("name", ["sevennet-0", "sevennet-l3i5"])
def test_float32_matches_sevenn(name, structures, sevenn_models, cache_dir, monkeypatch):
    """|ΔE| ≤ 2e-5 eV/atom, |ΔF| ≤ 2e-4 eV/Å, |Δσ| ≤ 2e-3 GPa against sevenn, every structure."""
    monkeypatch.setenv("EQUIJAX_CACHE", str(cache_dir))
    module, params = registry.load_pretrained(name)
    potential = Potential(module, params, policy=COARSE)
    atoms = list(structures.values())
    got = potential.predict(atoms, batch_size=len(atoms))
    want = sevenn_predict(sevenn_models[name][0], atoms, module.config.cutoff)
    for label, a, g, w in zip(structures, atoms, got, want):
        _compare(g, w, a, TOL_E_PER_ATOM, TOL_F, TOL_S_GPA, f"{name} {label}")


X64_SCRIPT = r"""
import jax
jax.config.update("jax_enable_x64", True)
import pickle, sys
import numpy as np
from equijax.graphs import BucketPolicy
from equijax.models.nequip.pretrained import from_pretrained
from equijax.potential import Potential

with open(sys.argv[1], "rb") as f:
    structures = pickle.load(f)
module, params = from_pretrained("sevennet-0", dtype=np.float64)
policy = BucketPolicy(growth=2.0, multiple=64, minimum=64)
out = Potential(module, params, policy=policy).predict(structures, batch_size=len(structures))
assert out[0]["forces"].dtype == np.float64
with open(sys.argv[2], "wb") as f:
    pickle.dump(out, f)
"""


def _displaced(atoms: ase.Atoms) -> list[ase.Atoms]:
    """±H moves of atom 0 along x and ±H strains εxx and εxy (positions and cell deformed)."""
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
def x64(structures, cache_dir, tmp_path_factory):
    """Float64 equijax predictions in a subprocess: the structures, then ±H displacements of the
    first benchmark structure."""
    base = structures[next(iter(structures))]
    batch = list(structures.values()) + _displaced(base)
    folder = tmp_path_factory.mktemp("x64")
    job, result = folder / "job.pkl", folder / "result.pkl"
    job.write_bytes(pickle.dumps(batch))
    env = {**os.environ, "EQUIJAX_CACHE": str(cache_dir), "JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", X64_SCRIPT, str(job), str(result)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    out = pickle.loads(result.read_bytes())
    return out[: len(structures)], out[len(structures) :], base


def test_float64_matches_sevenn(x64, structures, sevenn_models):
    """Float64 equijax against sevenn in float64 (with float64 Clebsch-Gordan buffers): ≤ 1e-9."""
    import torch

    got, _, _ = x64
    model, config = sevenn_models["sevennet-0"]
    want = sevenn_predict(
        float64_model(model, config), list(structures.values()), 5.0, torch.float64
    )
    for label, a, g, w in zip(structures, structures.values(), got, want):
        _compare(g, w, a, TOL_64, TOL_64, TOL_64 * 160.2, f"float64 {label}")


def test_float64_derivatives_match_finite_differences(x64):
    """F = -dE/dr and σ = (1/V) dE/dε against central differences of the float64 energy."""
    base_out, moved, base = x64[0][0], x64[1], x64[2]
    fd_force = -(moved[0]["energy"] - moved[1]["energy"]) / (2 * H)
    assert abs(fd_force - base_out["forces"][0, 0]) < 1e-6
    volume = base.get_volume()
    for k, (i, j) in enumerate(((0, 0), (0, 1))):
        plus, minus = moved[2 + 2 * k], moved[3 + 2 * k]
        fd_stress = (plus["energy"] - minus["energy"]) / (2 * H) / volume * 160.21766208
        assert abs(fd_stress - base_out["stress"][i, j]) < 1e-5, (i, j)


def test_rotation_invariance(cache_dir, monkeypatch):
    """A rotated structure: the same energy, rotated forces and stress (float32)."""
    monkeypatch.setenv("EQUIJAX_CACHE", str(cache_dir))
    atoms = hard_cases()["slab"]
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    rotated = atoms.copy()
    rotated.positions = atoms.positions @ rotation.T
    rotated.cell = atoms.cell @ rotation.T
    potential = Potential(*registry.load_pretrained("sevennet-0"), policy=COARSE)
    a, b = potential.predict([atoms, rotated], batch_size=2)
    assert abs(a["energy"] - b["energy"]) < 1e-4
    np.testing.assert_allclose(a["forces"] @ rotation.T, b["forces"], atol=1e-4)
    np.testing.assert_allclose(rotation @ a["stress"] @ rotation.T, b["stress"], atol=1e-3)


def test_every_tensor_must_map():
    """The conversion uses every sevenn tensor: an extra or a missing one raises."""
    state, _ = load_sevenn_checkpoint("7net-0")
    config = nequip_pretrained.PRESETS["sevennet-0"]
    params = convert_state_dict(state, config)["params"]
    assert params["interaction_1"]["radial"]["weight_nn"]["layer2"].shape == (64, 960)
    with pytest.raises(ValueError, match="was not mapped"):
        convert_state_dict({**state, "extra.weight": np.ones(3)}, config)
    missing = {k: v for k, v in state.items() if k != "3_self_interaction_1.linear.weight"}
    with pytest.raises(ValueError, match="lacks"):
        convert_state_dict(missing, config)


def test_cache_loads_without_sevenn(cache_dir, monkeypatch):
    """After the first conversion, loading reads the orbax cache and never calls sevenn."""
    monkeypatch.setenv("EQUIJAX_CACHE", str(cache_dir))
    first = registry.load_pretrained("sevennet-0")[1]

    def refuse(*_):
        raise AssertionError("sevenn was called although the cache exists")

    monkeypatch.setattr(nequip_pretrained, "load_sevenn_checkpoint", refuse)
    again = registry.load_pretrained("7net-0")[1]
    for a, b in zip(jax.tree_util.tree_leaves(first), jax.tree_util.tree_leaves(again)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_unknown_element_is_a_clear_error(cache_dir, monkeypatch):
    """An element outside SevenNet-0's 89 species: a ValueError naming it and the structure."""
    monkeypatch.setenv("EQUIJAX_CACHE", str(cache_dir))
    potential = Potential(*registry.load_pretrained("sevennet-0"), policy=COARSE)
    atoms = ase.Atoms("PoO", positions=[[0, 0, 0], [2.0, 0, 0]], cell=[8, 8, 8], pbc=True)
    with pytest.raises(ValueError, match="Po"):
        potential.predict(atoms)
