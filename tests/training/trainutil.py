"""Shared helpers of the training tests: tiny model overrides, a uniform-size EMT dataset (one padded
shape, so a run compiles one train step), and subprocess helpers (XLA flags set before jax loads)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
HELPERS = HERE / "helpers"
REPO = HERE.parents[1]
PYTHON = sys.executable
_SCRIPT = Path(sys.executable).with_name("equijax")  # the installed console script
EQUIJAX = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "equijax.cli"]

# A tiny CHGNet: compiling its train step is what dominates the runtime of these tests.
TINY_MODEL = [
    "model.atom_fea_dim=8",
    "model.bond_fea_dim=8",
    "model.angle_fea_dim=8",
    "model.hidden_dim=8",
    "model.mlp_hidden_dims=[8]",
    "model.n_conv=2",
    "model.num_radial=5",
    "model.num_angular=5",
    "model.atom_graph_cutoff=4.0",
]


def uniform_emt_structures(n: int, seed: int = 0) -> list:
    """``n`` EMT-labelled, rattled and strained 4-atom fcc cells (a = 3.6 Å, random Cu/Ni/Pd/Pt
    occupation): every structure has the same graph sizes at cutoffs 4.0/3.0 Å (18 neighbours per
    atom, none near a cutoff), so every batch pads to one shape."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from equijax.data import EV_PER_A3_TO_GPA, LabeledStructure

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.symbols = [str(s) for s in rng.choice(["Cu", "Ni", "Pd", "Pt"], size=len(atoms))]
        strain = rng.uniform(-0.02, 0.02, (3, 3))
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + (strain + strain.T) / 2), scale_atoms=True)
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        atoms.calc = EMT()
        out.append(
            LabeledStructure(
                id=f"u{i:03d}",
                atoms=atoms.copy(),
                energy=atoms.get_potential_energy(),
                forces=atoms.get_forces(),
                stress=atoms.get_stress(voigt=False) * EV_PER_A3_TO_GPA,
            )
        )
    return out


def subprocess_env(n_devices: int = 1, cache_dir: str | Path | None = None) -> dict:
    """Environment for a child process: ``n_devices`` CPU devices (set before jax is imported),
    and optionally a persistent compilation cache shared by the runs of one test."""
    env = dict(os.environ)
    # LLVM -O0: compiling the train step takes about half as long; every comparison in these tests
    # is between runs compiled with the same flags
    env["XLA_FLAGS"] = (
        f"--xla_force_host_platform_device_count={n_devices} --xla_backend_optimization_level=0"
    )
    env["JAX_PLATFORMS"] = "cpu"
    # and LLVM's expensive passes off too (jax_disable_most_optimizations; same for every run)
    env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    if cache_dir is not None:
        env["JAX_COMPILATION_CACHE_DIR"] = str(cache_dir)
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    return env


def run_checked(
    cmd: list[str], env: dict, timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """Run ``cmd``; on failure, fail the test with the tail of its output."""
    proc = subprocess.run(
        cmd, env=env, cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
