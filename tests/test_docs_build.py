"""The documentation site builds with `mkdocs build --strict`: every warning (a broken link or
anchor, a page missing from the nav, a docstring griffe cannot parse, an unresolved API reference)
fails the build, and so this test."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mkdocs_build_strict(tmp_path):
    assert importlib.util.find_spec("mkdocs") is not None, (
        "mkdocs is not installed: install the docs extra (pip install -e '.[docs]'; `make test` does)"
    )
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's end-of-life banner
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (
        f"mkdocs build --strict failed (exit {proc.returncode}):\n{proc.stderr}\n{proc.stdout}"
    )
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "api" / "graphs" / "index.html").exists()
