"""`equijax sweep` end to end at a tiny size: 4 points from a YAML sweep block, killed after its first
point and resumed without redoing it (through the submitit launcher, the SLURM code path, on
submitit's local cluster), then the results table."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from trainutil import EQUIJAX, REPO, subprocess_env

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, uniform_extxyz) -> Path:
    """A tiny CHGNet experiment with a 2 x 2 sweep block (grid data.seed, zip train.seed)."""
    path = tmp_path_factory.mktemp("exp") / "tiny_sweep.yaml"
    path.write_text(f"""defaults:
  - model: chgnet_tiny
  - train: smoke
  - _self_
name: tiny_sweep
data:
  source: {uniform_extxyz}
  n_structures: 16
  batch_size: 4
  fractions: [0.5, 0.25, 0.25]
train:
  max_steps: 2
  checkpoint_every_steps: 1
loss:
  magmoms: 0.0
sweep:
  jobs: 2
  grid:
    data.seed: [0, 1]
  zip:
    train.seed: [0, 1]
""")
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    return subprocess_env(1, cache_dir=tmp_path_factory.mktemp("jax_cache"))


def _finished(sweep_dir: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in sweep_dir.glob("*/metrics.json")}


def test_interrupted_sweep_resumes_and_collects(experiment, env, tmp_path):
    sweep_dir = tmp_path / "sweep"
    cmd = [*EQUIJAX, "sweep", "--config", str(experiment), "--dir", str(sweep_dir)]
    # first run, one point at a time, killed (with its children) once a point has finished
    first = subprocess.Popen(
        [*cmd, "--jobs", "1"],
        env=env,
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 400
    while not _finished(sweep_dir) and first.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGKILL)
    output = first.communicate()[0]
    done_before = _finished(sweep_dir)
    assert 1 <= len(done_before) < 4, output[-3000:]

    again = subprocess.run(
        [*cmd, "--launcher", "submitit-local"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert f"skipping {len(done_before)} finished point(s)" in again.stdout + again.stderr
    done_after = _finished(sweep_dir)
    assert len(done_after) == 4
    for name, mtime in done_before.items():  # finished points were not run again
        assert done_after[name] == mtime
        assert (sweep_dir / name / "log.txt").read_text().count("\n=== ") == 1

    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    )
    with (sweep_dir / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["done"] * 4
    assert sorted((r["data.seed"], r["train.seed"]) for r in rows) == [
        ("0", "0"),
        ("0", "1"),
        ("1", "0"),
        ("1", "1"),
    ]
    for row in rows:
        point = sweep_dir / row["point"]
        result = json.loads((point / "result.json").read_text())  # written by the training run
        assert float(row["val_mae_forces"]) == pytest.approx(result["val"]["mae_forces"], rel=1e-6)
        assert int(row["steps"]) == result["steps"] == 2
        snapshot = (point / "config.yaml").read_text()
        assert f"seed: {row['data.seed']}" in snapshot
        info = json.loads((point / "point.json").read_text())
        assert info["status"] == "done" and info["git"]["commit"] == head.stdout.strip()
        assert ("submitit_job" in info) == (row["point"] not in done_before)
    markdown = (sweep_dir / "results.md").read_text()
    assert markdown.count("| done |") == 4 and (sweep_dir / "results.png").stat().st_size > 0

    # the trained model of a point, loaded back and evaluated on its validation split through
    # `Potential` (`equijax evaluate`, not the training loop's eval step): the MAEs equal the ones
    # the run recorded (its val split is one whole batch, and its one evaluation is the best)
    from equijax.cli import main as cli_main

    point = sweep_dir / rows[0]["point"]
    out = tmp_path / "evaluate.json"
    assert cli_main(["evaluate", str(point), "--split", "val", "--out", str(out)]) == 0
    got = json.loads(out.read_text())["runs"][str(point)]
    for key in ("mae_energy", "mae_forces", "mae_stress"):
        assert got[key] == pytest.approx(float(rows[0][f"val_{key}"]), rel=1e-4), key
