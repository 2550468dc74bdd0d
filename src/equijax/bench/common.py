"""Shared benchmark helpers: the packaged benchmark structures, machine description, table
cells (`Table` itself lives in `equijax.table` and is re-exported here)."""

from __future__ import annotations

import datetime
import json
import os
import platform
from importlib import metadata, resources
from pathlib import Path

import ase.build
import ase.io
import jax

from equijax.table import Table  # noqa: F401 - re-exported: bench modules import it from here

BENCHMARK_FILE = "mptrj_like_256.extxyz"


def benchmark_structures_path() -> str:
    """Path of the packaged benchmark set: 256 MPtrj-like structures (6-80 atoms, mean 34)."""
    return str(resources.files("equijax.bench") / "data" / BENCHMARK_FILE)


def load_benchmark_structures(n: int | None = None):
    """The benchmark structures as a list of `ase.Atoms` (the first ``n`` if given)."""
    structures = ase.io.read(benchmark_structures_path(), index=":")
    return structures if n is None else structures[:n]


def share_gpu_with_torch() -> None:
    """Let a PyTorch reference in the same process have GPU memory: turn off JAX's preallocation
    of 75% of it (``XLA_PYTHON_CLIENT_PREALLOCATE=false``) unless the variable is already set.

    Effective only before JAX starts its GPU backend, so call it before the first
    ``jax.devices()`` or ``jax.default_backend()``; a no-op on a CPU. Without it, the reference
    CHGNet's batch-40 step (42 GB) would not fit beside JAX's pool on an 80 GB card."""
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    """Processor, core count, accelerator and library versions, for benchmark reports."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    devices = [d.device_kind for d in jax.devices()]
    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "jax_backend": jax.default_backend(),
        "jax_devices": devices,
        "python": platform.python_version(),
        "versions": {
            p: _version(p)
            for p in (
                "equijax",
                "jax",
                "jaxlib",
                "vesin",
                "ase",
                "jraph",
                "chgnet",
                "torch",
                "numpy",
            )
        },
    }
    info["summary"] = (
        f"{cpu} ({os.cpu_count()} cores), jax {info['versions']['jax']} on "
        f"{jax.default_backend()} [{', '.join(sorted(set(devices)))}]"
    )
    return info


def format_mb(megabytes: float | None) -> str:
    """Peak memory for tables: whole MB, or "n/a" where the backend reports none (CPU)."""
    return f"{megabytes:.0f}" if megabytes else "n/a"


def ratio(rate: float, reference_rate: float | None) -> str:
    """``rate / reference_rate`` as "1.23x", or "-" without a reference."""
    return f"{rate / reference_rate:.2f}x" if reference_rate else "-"


def write_json(results: dict, out: str | None, say: bool = True) -> None:
    """Write benchmark results to ``out`` (folders created) and, if ``say``, say where. A
    ``date`` (UTC, ISO) is added unless the results have one: `equijax bench report` names it."""
    if out:
        results = {
            "date": datetime.datetime.now(datetime.UTC).date().isoformat(),
            **results,
        }
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(results, indent=1))
        if say:
            print(f"wrote {out}")


def md_cell(n_atoms: int) -> ase.Atoms:
    """A rattled fcc Cu supercell with about ``n_atoms`` atoms (4 k^3)."""
    k = max(1, round((n_atoms / 4) ** (1 / 3)))
    atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True) * (k, k, k)
    atoms.rattle(0.05, seed=0)
    return atoms
