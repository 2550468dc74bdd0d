"""Run the points of a sweep, each in its own run directory, skipping finished ones.

A point's directory holds ``config.yaml`` (the resolved config snapshot), ``point.json`` (axes,
overrides, git commit, host, status, times), ``log.txt`` (its output), the run's own files
(``metrics.jsonl``, checkpoints) and, once it finished, ``metrics.json``. A point with
``metrics.json`` is finished and is skipped by a re-run; an interrupted point resumes from its
latest checkpoint. A finished point whose name is no longer in the sweep (an axis was added, so
every name changed) but whose resolved config equals a new point's is renamed to it, not rerun.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import submitit
import yaml
from tqdm.auto import tqdm

from equijax.sweep.spec import Point, SweepError, SweepSpec, expand
from equijax.sweep.tasks import bench_tp_config, run_bench_tp
from equijax.training.config import load_config, to_dict
from equijax.training.loop import train

SLURM_KEYS = ("partition", "account", "qos", "constraint", "time", "gres", "mem")


def git_commit(cwd: str | Path | None = None) -> dict:
    """``{"commit": sha or None, "dirty": bool or None}`` of the repository at ``cwd`` (default:
    the one holding the equijax source, i.e. the code that runs)."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=cwd,
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
        )
        return {"commit": sha, "dirty": dirty}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def _write_json(path: Path, data: dict) -> None:
    """Write atomically (a reader never sees half a file)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=float))
    os.replace(tmp, path)


def _update_point(point_dir: Path, **fields) -> None:
    path = point_dir / "point.json"
    info = json.loads(path.read_text()) if path.exists() else {}
    _write_json(path, info | fields)


def is_finished(point_dir: str | Path) -> bool:
    """True once the point wrote ``metrics.json``."""
    return (Path(point_dir) / "metrics.json").exists()


def resolved_config(spec: SweepSpec, point: Point, point_dir: Path) -> dict:
    """The point's full config as a plain dict (validated now, before anything runs)."""
    if spec.task == "bench-tp":
        return bench_tp_config(spec.config, point.overrides)
    config = load_config(
        spec.config, [*point.overrides, f"train.run_dir={point_dir}", "train.progress=false"]
    )
    return to_dict(config)


def _changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ. Keys the old snapshot lacks (fields added to equijax
    since the point ran, at their defaults) do not count."""
    out = []
    for key, value in new.items():
        if key not in old:
            continue
        if isinstance(value, dict) and isinstance(old[key], dict):
            out += _changed_keys(old[key], value, f"{prefix}{key}.")
        elif old[key] != value:
            out.append(f"{prefix}{key}")
    return out


_MISSING = object()


def _lookup(config: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(config, dict) or part not in config:
            return _MISSING
        config = config[part]
    return config


def _same_run(old: dict, new: dict, point: Point) -> bool:
    """Whether an old config snapshot describes ``point``'s run (``new``), the run directory
    aside. Every field the point's axes set must be in the old snapshot: a snapshot from before
    that field existed cannot tell which of its values the run used."""
    if any(
        _lookup(new, key) is not _MISSING and _lookup(old, key) is _MISSING for key in point.axes
    ):
        return False
    return all(key == "train.run_dir" for key in _changed_keys(old, new))


def orphaned_snapshots(sweep_dir: str | Path, names: list[str]) -> dict[str, dict]:
    """Config snapshots of the finished point directories in ``sweep_dir`` whose names are not
    among ``names`` (the current points), by directory name."""
    out = {}
    for snapshot in sorted(Path(sweep_dir).glob("*/config.yaml")):
        if snapshot.parent.name not in names and is_finished(snapshot.parent):
            out[snapshot.parent.name] = yaml.safe_load(snapshot.read_text())
    return out


def _adopt(old_dir: Path, point_dir: Path, point: Point, config: dict) -> None:
    """Rename a finished point's directory to ``point``'s, with its snapshot and record updated
    to the new name (the run's results are untouched)."""
    old_dir.rename(point_dir)
    snapshot = yaml.safe_load((point_dir / "config.yaml").read_text())
    if "train" in snapshot and "train" in config:
        snapshot["train"]["run_dir"] = config["train"]["run_dir"]
    (point_dir / "config.yaml").write_text(yaml.safe_dump(snapshot, sort_keys=False))
    _update_point(
        point_dir,
        name=point.name,
        axes=point.axes,
        overrides=point.overrides,
        renamed_from=old_dir.name,
    )


def prepare(
    spec: SweepSpec, point: Point, git: dict, orphans: dict[str, dict] | None = None
) -> tuple[Path, bool]:
    """Create the point's directory and snapshot; returns ``(dir, finished)``.

    ``orphans`` (`orphaned_snapshots`): finished points under other names. If the point has no
    directory yet and one of them ran the same config, that directory is renamed to the point's
    and taken off ``orphans``; the point counts as finished. Raises `SweepError` if a finished
    point was run with a different config."""
    point_dir = Path(spec.dir) / point.name
    config = resolved_config(spec, point, point_dir)
    snapshot = point_dir / "config.yaml"
    if not point_dir.exists():
        for name, old in list((orphans or {}).items()):
            if _same_run(old, config, point):
                del orphans[name]
                _adopt(point_dir.parent / name, point_dir, point, config)
                tqdm.write(f"point {point.name}: reusing finished point {name} (same config)")
                return point_dir, True
    if snapshot.exists():
        changed = _changed_keys(yaml.safe_load(snapshot.read_text()), config)
        if changed:
            if is_finished(point_dir):
                raise SweepError(
                    f"point {point.name!r} in {spec.dir} finished with a different "
                    f"config ({changed} changed); use another "
                    "sweep dir or delete that point"
                )
            for stale in point_dir.iterdir():  # unfinished and changed: start it afresh
                if stale.is_file():
                    stale.unlink()
                else:
                    shutil.rmtree(stale)
    if is_finished(point_dir):
        return point_dir, True
    point_dir.mkdir(parents=True, exist_ok=True)
    snapshot.write_text(yaml.safe_dump(config, sort_keys=False))
    _update_point(
        point_dir,
        name=point.name,
        task=spec.task,
        axes=point.axes,
        overrides=point.overrides,
        base_config=spec.config,
        git=git,
        status="pending",
        python=sys.executable,
    )
    return point_dir, False


def run_point(point_dir: str | Path) -> dict:
    """Run one prepared point in this process and write its ``metrics.json``; returns it.

    Training resumes from the point's latest checkpoint if there is one."""
    point_dir = Path(point_dir)
    config = yaml.safe_load((point_dir / "config.yaml").read_text())
    info = json.loads((point_dir / "point.json").read_text())
    start = time.time()
    _update_point(
        point_dir,
        status="running",
        host=socket.gethostname(),
        started=start,
        slurm_job_id=os.environ.get("SLURM_JOB_ID"),
    )
    try:
        if info.get("task", "train") == "bench-tp":
            metrics = run_bench_tp(config, point_dir)
        else:
            metrics = _run_train(point_dir)
    except BaseException as err:
        _update_point(
            point_dir,
            status="failed",
            error=f"{type(err).__name__}: {err}",
            wall_s=time.time() - start,
        )
        raise
    metrics = {"wall_s": time.time() - start, **metrics}
    _write_json(point_dir / "metrics.json", metrics)
    _update_point(point_dir, status="done", finished=time.time(), wall_s=metrics["wall_s"])
    return metrics


def _run_train(point_dir: Path) -> dict:
    result = train(load_config(point_dir / "config.yaml"), resume=True)
    flat = {k: result[k] for k in ("steps", "num_params", "structures_per_s", "devices")}
    for split in ("val", "test"):
        flat.update({f"{split}_{k}": v for k, v in result[split].items()})
    flat.update({f"baseline_{k}": v for k, v in result["baseline_val"].items()})
    return flat


def _run_local(point_dir: Path) -> int:
    """One point as a child process (``python -m equijax.sweep.point DIR``), output to log.txt.

    Unless ``JAX_COMPILATION_CACHE_DIR`` is set, points share a persistent compilation cache in
    the sweep directory, so points whose shapes agree compile their steps once."""
    env = dict(os.environ)
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(point_dir.parent.resolve() / ".jax_cache"))
    with (point_dir / "log.txt").open("a") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} on {socket.gethostname()}\n")
        log.flush()
        return subprocess.run(
            [sys.executable, "-m", "equijax.sweep.point", str(point_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            check=False,
        ).returncode


def _submitit_executor(spec: SweepSpec):
    cluster = "local" if spec.launcher == "submitit-local" else "slurm"
    executor = submitit.AutoExecutor(folder=Path(spec.dir) / ".submitit" / "%j", cluster=cluster)
    params = {(f"slurm_{k}" if k in SLURM_KEYS else k): v for k, v in spec.slurm.items()}
    params.setdefault("timeout_min", 60)
    params.setdefault("name", f"equijax-sweep-{Path(spec.dir).name}")
    if cluster == "slurm":
        params.setdefault("slurm_array_parallelism", spec.jobs)
    executor.update_parameters(**params)
    return executor


@dataclasses.dataclass
class SweepOutcome:
    """What `run_sweep` did: point names that ran, were skipped (finished) or failed, and the
    submitted job ids when it did not wait."""

    ran: list[str]
    skipped: list[str]
    failed: list[str]
    submitted: list[str]


def run_sweep(spec: SweepSpec, wait: bool = True, progress: bool = True) -> SweepOutcome:
    """Prepare every point (validating all configs first), then run the unfinished ones."""
    points = expand(spec)
    Path(spec.dir).mkdir(parents=True, exist_ok=True)
    git = git_commit()
    orphans = orphaned_snapshots(spec.dir, [p.name for p in points])
    prepared = [(p, *prepare(spec, p, git, orphans)) for p in points]
    _write_json(
        Path(spec.dir) / "sweep.json",
        {"spec": dataclasses.asdict(spec), "git": git, "points": [p.name for p in points]},
    )
    todo = [(p, d) for p, d, finished in prepared if not finished]
    outcome = SweepOutcome([], [p.name for p, _, done in prepared if done], [], [])
    bar = tqdm(
        total=len(points),
        initial=len(outcome.skipped),
        desc="sweep",
        unit="point",
        disable=not progress,
    )
    if outcome.skipped:
        bar.write(
            f"skipping {len(outcome.skipped)} finished point(s): {', '.join(outcome.skipped)}"
        )

    def record(name: str, ok: bool, detail: str = "") -> None:
        (outcome.ran if ok else outcome.failed).append(name)
        bar.update(1)
        bar.set_postfix(failed=len(outcome.failed))
        if not ok:
            bar.write(f"point {name} FAILED{detail}")

    if spec.launcher == "local":
        with concurrent.futures.ThreadPoolExecutor(spec.jobs) as pool:
            futures = {pool.submit(_run_local, d): (p, d) for p, d in todo}
            for future in concurrent.futures.as_completed(futures):
                p, d = futures[future]
                code = future.result()
                record(p.name, code == 0, f" (exit {code}); see {d / 'log.txt'}")
    elif todo:
        executor = _submitit_executor(spec)
        jobs = executor.map_array(run_point, [str(d) for _, d in todo])
        for (_, d), job in zip(todo, jobs):
            _update_point(d, submitit_job=job.job_id, status="submitted")
        outcome.submitted = [job.job_id for job in jobs]
        if wait:
            for (p, _), job in zip(todo, jobs):
                try:
                    job.result()
                    record(p.name, True)
                except Exception as err:  # noqa: BLE001 - one failed point does not stop the sweep
                    record(p.name, False, f": {str(err).strip().splitlines()[-1][:200]}")
        else:
            bar.write(f"submitted {len(jobs)} job(s): {', '.join(outcome.submitted)}")
    bar.close()
    return outcome
