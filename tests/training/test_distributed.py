"""Multi-process data parallelism: 2 `jax.distributed` processes on localhost (1 CPU device each,
gloo collectives) train exactly like 1 process with 2 CPU devices.

Both use `helpers/data_parallel_steps.py`: the same 16-structure global batch, split by
``device_batch`` over ``make_mesh(0)`` (all global devices), placed with ``shard_batch``
(`jax.make_array_from_callback`: each process supplies its own device's shard), 3 train steps from
the same initial params, then the eval step. All three processes run at the same time.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from trainutil import HELPERS, PYTHON, REPO, TINY_MODEL, free_port, subprocess_env

N_STEPS = 3


def _start(args, env, log):
    return subprocess.Popen(
        [PYTHON, str(HELPERS / "data_parallel_steps.py"), *args],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``{"single": results, "proc0": results, "proc1": results}`` of the two setups."""
    root = tmp_path_factory.mktemp("dist")
    common = [str(N_STEPS), "0", "--", *TINY_MODEL]
    port = free_port()
    procs, logs = {}, {}
    for name in ("single", "proc0", "proc1"):
        logs[name] = (root / f"{name}.log").open("w")
    procs["single"] = _start([str(root / "single.npz"), *common], subprocess_env(2), logs["single"])
    for pid in (0, 1):
        env = subprocess_env(1)
        env.update(
            EQUIJAX_TEST_COORDINATOR=f"127.0.0.1:{port}",
            EQUIJAX_TEST_NPROC="2",
            EQUIJAX_TEST_PID=str(pid),
        )
        procs[f"proc{pid}"] = _start([str(root / "multi.npz"), *common], env, logs[f"proc{pid}"])
    failed = []
    for name, proc in procs.items():
        try:
            code = proc.wait(timeout=450)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = "timeout"
        logs[name].close()
        if code != 0:
            failed.append(f"{name} exited {code}:\n{(root / f'{name}.log').read_text()[-3000:]}")
    if failed:
        for proc in procs.values():
            proc.kill()
        pytest.fail("\n".join(failed))
    files = {
        "single": root / "single.npz",
        "proc0": root / "multi.0.npz",
        "proc1": root / "multi.1.npz",
    }
    return {name: dict(np.load(path)) for name, path in files.items()}


def test_processes_form_one_two_device_mesh(runs):
    """Each process sees 2 global devices (1 local) in a 2-process job; the reference 2 local."""
    for pid in (0, 1):
        r = runs[f"proc{pid}"]
        assert (int(r["process_count"]), int(r["process_index"])) == (2, pid)
        assert (int(r["device_count"]), int(r["local_device_count"])) == (2, 1)
    s = runs["single"]
    assert (int(s["process_count"]), int(s["device_count"]), int(s["local_device_count"])) == (
        1,
        2,
        2,
    )
    for r in runs.values():
        assert r["d2/group_sizes"].tolist() == [8, 8]
        np.testing.assert_array_equal(r["d2/groups"], runs["single"]["d2/groups"])


def test_losses_and_metrics_match_single_process(runs):
    """Per-step losses/MAEs/counts and eval metrics of both processes equal the 1-process run's."""
    ref = runs["single"]
    keys = [k for k in ref if k.startswith(("d2/train/", "d2/eval/"))]
    assert "d2/train/loss" in keys and "d2/eval/loss" in keys
    assert len(ref["d2/train/loss"]) == N_STEPS
    for pid in (0, 1):
        for key in keys:
            np.testing.assert_allclose(
                runs[f"proc{pid}"][key],
                ref[key],
                rtol=1e-6,
                atol=1e-9,
                err_msg=f"process {pid} {key}",
            )


def test_final_state_matches_single_process(runs):
    """Both processes' state after 3 steps equals each other and the 1-process run's."""
    ref = runs["single"]
    keys = [k for k in ref if k.startswith("d2/state")]
    assert any(".params" in k for k in keys)
    for key in keys:
        np.testing.assert_array_equal(runs["proc0"][key], runs["proc1"][key], err_msg=key)
        tol = dict(rtol=1e-4, atol=1e-9) if "opt_state" in key else dict(rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(runs["proc0"][key], ref[key], err_msg=key, **tol)
