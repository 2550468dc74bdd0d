"""Fixtures of the `equijax.nn.tp` tests: cheaper XLA compiles, float64 on request.

The suite is dominated by XLA compile time on a 2-core CPU (many small einsums per product), so
every test here runs with ``jax_disable_most_optimizations`` (about half the compile time; the
numerics are the same IEEE operations). Both settings are restored after each module, so nothing
leaks into other test files that pytest-xdist runs in the same worker.
"""

from __future__ import annotations

import jax
import pytest


@pytest.fixture(autouse=True, scope="module")
def _fast_compiles():
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", previous)


@pytest.fixture(scope="module")
def x64():
    """Float64 for a whole module (``pytestmark = pytest.mark.usefixtures("x64")``), restored after."""
    with jax.enable_x64(True):
        yield
