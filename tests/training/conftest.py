"""Fixtures of the training tests (helpers live in `trainutil`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from trainutil import uniform_emt_structures


@pytest.fixture(scope="session")
def uniform_structures() -> list:
    """40 uniform-size EMT structures (see `uniform_emt_structures`)."""
    return uniform_emt_structures(40)


@pytest.fixture(scope="session")
def uniform_extxyz(tmp_path_factory, uniform_structures) -> Path:
    """The 40 uniform structures as an extxyz file (a ``data.source`` for `equijax train`)."""
    from equijax.data import write_extxyz

    path = tmp_path_factory.mktemp("data") / "uniform40.extxyz"
    write_extxyz(uniform_structures, path)
    return path
