"""Exact resume: a run SIGKILLed mid-epoch and resumed with ``equijax train --resume`` ends where an
uninterrupted run ends; damaged or foreign checkpoints are refused without loading anything.

Run A: ``equijax train`` for 6 steps (checkpoint every 2; 32 training structures in batches of 8,
so 4 steps per epoch). Run B: the same config, killed with SIGKILL while step 4 runs (steps 1-3
done, checkpoint 2 on disk: mid-epoch), then ``equijax train --resume``, which crosses the epoch
boundary (validation, best checkpoint) on its way to step 6. The runs share a persistent compilation cache (to save compile time).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from trainutil import EQUIJAX, HELPERS, PYTHON, TINY_MODEL, run_checked, subprocess_env

from equijax.cli import build_parser
from equijax.training.checkpoint import CheckpointError

RUN_ARGS = [
    *TINY_MODEL,
    "data.n_structures=40",
    "data.batch_size=8",
    "train.max_steps=6",
    "train.checkpoint_every_steps=2",
    "train.epochs=100",
    "train.progress=false",
    "train.prefetch=2",
    # stage two of the loss weights from step 3: the resumed run B crosses the switch
    "loss.stage_two.start=0.5",
    "loss.stage_two.energy=3.0",
    "log.tensorboard=true",  # read back in test_tensorboard_events_mirror_the_metrics_log
]


def _steps(run_dir: Path, kind: str = "checkpoints") -> list[int]:
    return sorted(int(p.name) for p in (run_dir / kind).iterdir() if p.name.isdigit())


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _restore(run_dir: Path, step: int) -> tuple[dict, dict]:
    """A checkpoint's state (as flat ``{path: array}``) and meta, read with orbax directly."""
    manager = ocp.CheckpointManager(run_dir.absolute() / "checkpoints")
    restored = manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore())
    )
    manager.close()
    leaves, _ = jax.tree_util.tree_flatten_with_path(restored["state"])
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in leaves}, restored["meta"]


def _cli_train(argv: list[str]) -> None:
    """``equijax train ARGV`` in this process (without the CLI's thread-count env changes)."""
    args = build_parser().parse_args(["train", *argv])
    args.func(args)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, uniform_extxyz):
    """Run A (uninterrupted) and run B (killed at step 4, then resumed); B's state when killed."""
    root = tmp_path_factory.mktemp("resume")
    env = subprocess_env(1, cache_dir=root / "jax_cache")
    args = [*RUN_ARGS, f"data.source={uniform_extxyz}"]
    a, b = root / "A", root / "B"
    run_a = run_checked([*EQUIJAX, "train", *args, f"train.run_dir={a}"], env, timeout=300)

    marker, log = root / "B.hang", root / "B.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                PYTHON,
                str(HELPERS / "train_hang.py"),
                "4",
                str(marker),
                "--",
                "train",
                *args,
                f"train.run_dir={b}",
            ],
            env=env,
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 240
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(
                f"run B did not reach step 4 (exit {proc.poll()}):\n{log.read_text()[-4000:]}"
            )
        time.sleep(0.1)
    killed = {
        "steps": _steps(b),
        "records": _records(b),
        "ckpt2_metadata": (b / "checkpoints" / "2" / "_CHECKPOINT_METADATA").read_bytes(),
    }
    os.kill(proc.pid, signal.SIGKILL)
    killed["returncode"] = proc.wait(timeout=60)
    run_checked([*EQUIJAX, "train", "--resume", *args, f"train.run_dir={b}"], env, timeout=300)
    return {"A": a, "B": b, "args": args, "killed": killed, "A_output": run_a.stdout + run_a.stderr}


def test_run_was_killed_mid_epoch_after_a_checkpoint(runs):
    """Run B was SIGKILLed in step 4, after mid-epoch checkpoint 2, with 3 steps logged."""
    killed = runs["killed"]
    assert killed["returncode"] == -signal.SIGKILL
    assert killed["steps"] == [2]
    assert [r["step"] for r in killed["records"] if r["split"] == "train"] == [1, 2, 3]
    _, meta = _restore(runs["B"], 2)
    assert (meta["epoch"], meta["next_step"]) == (0, 2)
    # the resumed run started from checkpoint 2: it did not rewrite it
    assert (runs["B"] / "checkpoints" / "2" / "_CHECKPOINT_METADATA").read_bytes() == killed[
        "ckpt2_metadata"
    ]


def test_stage_two_begins_at_its_step(runs):
    """Run A announces stage two at step round(0.5 * 6) = 3, once."""
    out = runs["A_output"]
    assert out.count("stage two of the loss begins") == 1, out[-2000:]
    assert "step 3: stage two of the loss begins (energy 1.0 -> 3.0)" in out


def test_resumed_run_matches_uninterrupted_run(runs):
    """Killed-and-resumed run B ends with bit-identical state and metrics to uninterrupted run A."""
    a, b = runs["A"], runs["B"]
    assert _steps(a) == _steps(b) == [2, 4, 6]
    records_a, records_b = _records(a), _records(b)
    assert [(r["split"], r["step"]) for r in records_a if r["split"] != "train"] == [
        ("val", 4),
        ("val", 6),
        ("test", 6),
    ]
    assert [r["step"] for r in records_a if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]
    # train losses/MAEs per step, val per epoch, test; the timings are the clock's
    timing = ("structures_per_s", "data_wait_fraction")

    def untimed(records):
        return [{k: v for k, v in r.items() if k not in timing} for r in records]

    assert untimed(records_b) == untimed(records_a)
    assert _steps(a, "best") == _steps(b, "best")
    for step in (4, 6):
        state_a, meta_a = _restore(a, step)
        state_b, meta_b = _restore(b, step)
        assert state_a.keys() == state_b.keys()
        assert int(state_a["['step']"]) == step
        for key, value in state_a.items():
            np.testing.assert_array_equal(state_b[key], value, err_msg=f"step {step} {key}")
        # step 4 ends epoch 0: resume would start at epoch 1, step 0; step 6 is mid-epoch 1
        assert (meta_a["epoch"], meta_a["next_step"]) == {4: (1, 0), 6: (1, 2)}[step]
        for meta in (meta_a, meta_b):
            meta["config"]["train"].pop("run_dir")
        assert meta_b == meta_a
    # the state moved away from step 2's
    state_2, _ = _restore(a, 2)
    assert any(
        not np.array_equal(v, state_2[k])
        for k, v in _restore(a, 6)[0].items()
        if k.startswith("['params']")
    )


def _copy_run(runs, tmp_path, name) -> Path:
    dest = tmp_path / name
    shutil.copytree(runs["A"], dest)
    return dest


def _snapshot(run_dir: Path) -> dict:
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != "config.json"
    }


def _truncate_state_data(ckpt: Path) -> None:
    data = sorted((ckpt / "state" / "d").iterdir())
    assert data
    for f in data:
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _delete_meta(ckpt: Path) -> None:
    (ckpt / "meta" / "metadata").unlink()


# orbax leaves a callback on its closed event loop after the failed read (harmless)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(
    "damage", [_truncate_state_data, _delete_meta], ids=["state-truncated", "meta-deleted"]
)
def test_corrupted_latest_checkpoint_is_refused(runs, tmp_path, damage):
    """``--resume`` on a damaged checkpoint raises `CheckpointError` naming it, changing nothing."""
    run_dir = _copy_run(runs, tmp_path, "C")
    ckpt = run_dir.absolute() / "checkpoints" / "6"
    damage(ckpt)
    before = _snapshot(run_dir)
    with pytest.raises(CheckpointError, match=re.escape(str(ckpt))):
        _cli_train(["--resume", *runs["args"], f"train.run_dir={run_dir}"])
    assert _snapshot(run_dir) == before


def test_checkpoint_of_another_model_is_refused(runs, tmp_path):
    """``--resume`` with a different model config (hidden_dim 8 -> 16) refuses the checkpoint."""
    run_dir = _copy_run(runs, tmp_path, "D")
    before = _snapshot(run_dir)
    ckpt = run_dir.absolute() / "checkpoints" / "6"
    with pytest.raises(CheckpointError, match=re.escape(str(ckpt)) + ".*refusing"):
        _cli_train(["--resume", *runs["args"], "model.hidden_dim=16", f"train.run_dir={run_dir}"])
    assert _snapshot(run_dir) == before


def test_refused_resume_keeps_the_run_config(runs, tmp_path):
    """A refused ``--resume`` leaves the run's ``config.json`` unchanged."""
    run_dir = _copy_run(runs, tmp_path, "E")
    before = (run_dir / "config.json").read_text()
    with pytest.raises(CheckpointError):
        _cli_train(["--resume", *runs["args"], "model.hidden_dim=16", f"train.run_dir={run_dir}"])
    assert (run_dir / "config.json").read_text() == before


def test_init_from_copies_the_trunk_and_starts_new_heads_fresh(runs, uniform_structures):
    """``model.init_from`` (a direct-heads model started from conservative run A): every trunk
    parameter equals A's best EMA parameter as orbax reads it; the direct heads equal a fresh
    init's; a conservative model with other layer sizes is refused naming the parameter."""
    from equijax.training.config import load_config
    from equijax.training.data_source import structure_graphs as _graphs
    from equijax.training.model_setup import build_model, initial_params

    a = runs["A"]
    (best,) = _steps(a, "best")
    manager = ocp.CheckpointManager(a.absolute() / "best")
    saved = manager.restore(best, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    manager.close()
    want = {
        jax.tree_util.keystr(p): np.asarray(x)
        for p, x in jax.tree_util.tree_leaves_with_path(saved["state"]["ema_params"]["params"])
    }

    config = load_config(None, [*runs["args"], "model.forces=direct", f"model.init_from={a}"])
    module = build_model(config.model)
    example = _graphs(uniform_structures[:1], config.model)[0]
    params = initial_params(config, module, example, uniform_structures)
    fresh = module.init(jax.random.key(config.train.seed), example)
    got = {
        jax.tree_util.keystr(p): np.asarray(x)
        for p, x in jax.tree_util.tree_leaves_with_path(params["params"])
    }
    fresh = {
        jax.tree_util.keystr(p): np.asarray(x)
        for p, x in jax.tree_util.tree_leaves_with_path(fresh["params"])
    }
    heads = {k for k in got if k not in want}
    assert heads and all("direct" in k for k in heads), heads
    for key, value in got.items():
        np.testing.assert_array_equal(value, want[key] if key in want else fresh[key], err_msg=key)

    wider = load_config(None, [*runs["args"], "model.atom_fea_dim=12", f"model.init_from={a}"])
    with pytest.raises(ValueError, match=r"differs in atom_fea_dim: 8 there, 12 here"):
        initial_params(wider, build_model(wider.model), example, uniform_structures)


def test_tensorboard_events_mirror_the_metrics_log(runs):
    """Run A's TensorBoard event files (read as TFRecords) hold every number of its metrics.jsonl
    as ``<split>/<key>`` at its step, and the logged learning rate is optax's warm-up + cosine
    schedule of the run's config at the step's update."""
    import optax
    from tensorboardX.proto import event_pb2

    a = runs["A"]
    events = {}
    for path in (a / "tensorboard").glob("events.out.tfevents.*"):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            length = int.from_bytes(data[pos : pos + 8], "little")
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 16 + length
            events.update({(v.tag, event.step): v.simple_value for v in event.summary.value})
    records = _records(a)
    assert {r["split"] for r in records} == {"train", "val", "test"}
    for record in records:
        for key, value in record.items():
            if key not in ("split", "step") and isinstance(value, float):
                got = events[f"{record['split']}/{key}", record["step"]]
                assert got == pytest.approx(value, rel=1e-6, abs=1e-12), (record["split"], key)
    optim = json.loads((a / "config.json").read_text())["optim"]
    schedule = optax.warmup_cosine_decay_schedule(
        0.0,
        optim["learning_rate"],
        max(optim["warmup_steps"], 1),
        max(6, optim["warmup_steps"] + 1),
        optim["learning_rate"] * optim["final_lr_fraction"],
    )
    for step in range(1, 7):
        want = float(schedule(step - 1))
        assert events["train/learning_rate", step] == pytest.approx(want, rel=1e-6, abs=1e-12)
