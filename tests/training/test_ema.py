"""`ema_update`: the recursion equals the EMA written as explicit weights on each step's params."""

import numpy as np
import pytest

from equijax.training.step import ema_update


@pytest.mark.parametrize("decay", [0.0, 0.9, 0.99])
def test_ema_equals_its_explicit_weighted_sum(decay):
    rng = np.random.default_rng(0)
    steps = 60
    trajectory = rng.normal(size=(steps + 1, 3))  # params before step 0, then after each step
    ema = {"w": trajectory[0]}
    for t in range(steps):
        ema = ema_update(ema, {"w": trajectory[t + 1]}, t, decay)
    # weight of the params after step t: (1 - d_t) * prod_{k > t} d_k; the initial params keep
    # prod_k d_k
    d = np.minimum(decay, (1.0 + np.arange(steps)) / (10.0 + np.arange(steps)))
    later = np.append(np.cumprod(d[::-1])[::-1][1:], 1.0)  # prod_{k > t} d_k
    weights = (1 - d) * later
    expected = np.prod(d) * trajectory[0] + weights @ trajectory[1:]
    np.testing.assert_allclose(np.asarray(ema["w"]), expected, rtol=1e-5, atol=1e-6)
    assert np.prod(d) + weights.sum() == pytest.approx(1.0)


def test_initial_params_leave_the_average():
    """After 320 steps the random initial params weigh < 1e-6, against 0.99**320 = 4% for a
    fixed decay."""
    ema = {"w": np.ones(1)}
    for t in range(320):
        ema = ema_update(ema, {"w": np.zeros(1)}, t, 0.99)
    assert float(ema["w"][0]) < 1e-6 < 0.99**320
