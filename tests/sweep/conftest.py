"""Fixtures of the sweep tests: the uniform-size EMT set of the training tests as an extxyz file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))


@pytest.fixture(scope="module")
def uniform_extxyz(tmp_path_factory) -> Path:
    """16 uniform 4-atom EMT cells (one padded shape: each point compiles one train step)."""
    from trainutil import uniform_emt_structures

    from equijax.data import write_extxyz

    path = tmp_path_factory.mktemp("data") / "uniform16.extxyz"
    write_extxyz(uniform_emt_structures(16), path)
    return path
