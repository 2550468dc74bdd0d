"""The command line pins the numeric libraries' threads before any of them loads (the benchmark
anchors were measured that way: a 2-core CPU shared by XLA and spinning BLAS threads is slower),
and ``import equijax`` alone loads no numerical library."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import os, sys
import equijax
assert "numpy" not in sys.modules and "jax" not in sys.modules, "import equijax loaded numpy/jax"
import equijax.cli
print(os.environ.get("OMP_NUM_THREADS"), os.environ.get("OPENBLAS_NUM_THREADS"))
import torch
print(torch.get_num_threads())
print(equijax.Potential.__name__)
"""


def test_cli_pins_threads_before_numpy_loads():
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    }
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.split()
    assert lines[:2] == ["1", "1"]
    assert lines[2] == "1"  # torch (loaded by vesin with the graphs) read the setting
    assert lines[3] == "Potential"  # the lazy public API


def test_a_user_setting_is_kept():
    env = dict(os.environ, OMP_NUM_THREADS="2")
    out = subprocess.run(
        [sys.executable, "-c", "import equijax.cli, os; print(os.environ['OMP_NUM_THREADS'])"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.stdout.strip() == "2", out.stderr[-2000:]
