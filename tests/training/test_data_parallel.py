"""Data parallelism: train steps on 8 simulated CPU devices agree with the same steps on 1 device.

One subprocess (8 host devices) runs 3 steps of one global batch of 16 EMT structures from the same
initial params on ``make_mesh(1)`` and on ``make_mesh(8)`` (`helpers/data_parallel_steps.py`).
The optimizer warms up over 1 step, so step 1 has learning rate 0 and steps 2-3 update the params.
"""

from __future__ import annotations

import numpy as np
import pytest
from trainutil import HELPERS, PYTHON, TINY_MODEL, run_checked, subprocess_env

N_STEPS = 3


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Results of the 1-device and 8-device runs (one subprocess)."""
    out = tmp_path_factory.mktemp("dp") / "dp.npz"
    run_checked(
        [
            PYTHON,
            str(HELPERS / "data_parallel_steps.py"),
            str(out),
            str(N_STEPS),
            "1",
            "8",
            "--",
            *TINY_MODEL,
        ],
        env=subprocess_env(8),
        timeout=400,
    )
    data = np.load(out)
    return {k: data[k] for k in data.files}


def _pairs(runs, prefix):
    keys = [k for k in runs if k.startswith(f"d1/{prefix}")]
    assert keys, prefix
    return [(k, runs[k], runs["d8" + k[2:]]) for k in keys]


def test_split_covers_the_global_batch(runs):
    """The 8-device split holds the same 16 structures as the 1-device batch, 2 per device."""
    assert runs["d1/group_sizes"].tolist() == [16]
    assert runs["d8/group_sizes"].tolist() == [2] * 8
    assert sorted(runs["d8/groups"].tolist()) == sorted(runs["d1/groups"].tolist())
    assert len(set(runs["d1/groups"].tolist())) == 16


def test_losses_and_train_metrics_match(runs):
    """Loss, MAEs and label counts of every step agree between 1 and 8 devices (1e-6 relative)."""
    for key, one, eight in _pairs(runs, "train/"):
        np.testing.assert_allclose(eight, one, rtol=1e-6, atol=1e-9, err_msg=key)
    assert runs["d1/train/count_forces"][0] > 0 and runs["d1/train/count_stress"][0] > 0
    # the run is not trivial: steps 2-3 moved the params and the loss
    assert runs["d1/train/loss"][2] != runs["d1/train/loss"][1]
    moved = [
        np.abs(v - runs["init" + k[len("d1/state.params") :]]).max()
        for k, v in runs.items()
        if k.startswith("d1/state.params")
    ]
    assert sum(m > 1e-4 for m in moved) > len(moved) // 2


def test_eval_metrics_match(runs):
    """The eval step gives the same loss, MAEs and counts on 1 and 8 devices for the same params."""
    for key, one, eight in _pairs(runs, "eval/"):
        np.testing.assert_allclose(eight, one, rtol=1e-6, atol=1e-9, err_msg=key)


def test_gradients_match(runs):
    """The gradient (Adam's first moment after one step) agrees between 1 and 8 devices."""
    for key, one, eight in _pairs(runs, "state1"):
        np.testing.assert_allclose(eight, one, rtol=1e-5, atol=1e-9, err_msg=key)


def test_updated_state_matches(runs):
    """Params, EMA params and optimizer state after 3 steps agree between 1 and 8 devices."""
    for key, one, eight in _pairs(runs, "state."):
        if "opt_state" in key:  # moments of step 3, after params that already differ by round-off
            np.testing.assert_allclose(eight, one, rtol=1e-4, atol=1e-9, err_msg=key)
        else:  # Adam divides by sqrt(v): round-off in near-zero gradients shows up at ~lr * 1e-4
            # (up to 2.4e-4 seen; a missing or doubled psum would move every update by ~lr)
            np.testing.assert_allclose(eight, one, rtol=1e-6, atol=3e-6, err_msg=key)
