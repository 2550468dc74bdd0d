"""`equijax.bench.memory`: XLA's plan of a compiled step and the measured resident growth, each
checked against allocations of known size."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from equijax.bench.memory import PeakRSS, rss_supported, xla_memory


def test_xla_memory_counts_the_arguments_and_donation():
    """Arguments are the inputs' bytes (numpy's count); a donated input the output reuses shows
    up as aliased, and total = arguments + outputs + temp - aliased."""
    x = jnp.ones((1000, 256), jnp.float32)
    y = jnp.ones((256, 128), jnp.float32)
    plan = xla_memory(jax.jit(lambda a, b: jnp.tanh(a @ b)).lower(x, y).compile())
    mb = 2**20
    np.testing.assert_allclose(plan["arguments"], (x.nbytes + y.nbytes) / mb)
    np.testing.assert_allclose(plan["outputs"], 1000 * 128 * 4 / mb)
    assert plan["aliased"] == 0
    assert plan["total"] == pytest.approx(plan["arguments"] + plan["outputs"] + plan["temp"])
    donated = xla_memory(jax.jit(lambda a: a * 2.0, donate_argnums=0).lower(x).compile())
    np.testing.assert_allclose(donated["aliased"], x.nbytes / mb)
    np.testing.assert_allclose(donated["total"], x.nbytes / mb + donated["temp"])


def test_xla_memory_is_none_without_an_analysis():
    class NoAnalysis:
        def memory_analysis(self):
            raise NotImplementedError

    assert xla_memory(NoAnalysis()) is None


@pytest.mark.skipif(not rss_supported(), reason="needs Linux /proc/self/clear_refs (CI has it)")
def test_peak_rss_sees_a_block_allocation_and_not_the_earlier_one():
    """A 200 MB array made and freed inside the block is its growth; a 300 MB array made and
    freed before the block is not."""
    before = np.ones(300 * 2**20 // 8)
    del before
    with PeakRSS() as m:
        inside = np.ones(200 * 2**20 // 8)
        del inside
    assert m.baseline_mb > 0
    assert 190 < m.growth_mb < 260, m.growth_mb
