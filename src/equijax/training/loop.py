"""`train(config)`: data -> graphs -> any registered model -> data-parallel steps, with
validation, metrics, checkpoints (exact resume) and a clear stop on a NaN/inf loss. One run is
`_setup`, then `_train_epoch` and `_validate` per epoch, then `_finish`."""

from __future__ import annotations

import dataclasses
import datetime
import json
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from equijax.data import per_element_linear_baseline, split_by_group
from equijax.nn.precision import check_emulation_covers, with_matmul_precision
from equijax.training.checkpoint import Checkpoints
from equijax.training.config import ExperimentConfig, stage_two_start_step, to_dict
from equijax.training.data_source import load_structures, open_streamed, structure_graphs
from equijax.training.loader import Loader
from equijax.training.loss import TARGETS
from equijax.training.metrics import MetricsLog
from equijax.training.model_setup import (
    build_model,
    check_init_from,
    count_params,
    frozen_collections,
    initial_params,
)
from equijax.training.model_spec import model_spec
from equijax.training.scalar_loggers import make_loggers
from equijax.training.step import (
    init_state,
    learning_rate_schedule,
    make_eval_step,
    make_mesh,
    make_optimizer,
    make_train_step,
    replicate,
    shard_batch,
)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the message names the step and the structures."""


def _stage_two_text(config) -> str:
    """ "energy 1.0 -> 10.0, ..." for the weights (and the conservative_every) that
    ``loss.stage_two`` changes."""
    loss, stage = config.loss, config.loss.stage_two
    changes = [
        f"{t} {getattr(loss, t)} -> {getattr(stage, t)}"
        for t in TARGETS
        if getattr(stage, t) is not None
    ]
    if stage.conservative_every is not None:
        changes.append(
            f"conservative_every {config.train.conservative_every} -> {stage.conservative_every}"
        )
    fixed = [
        f"{t} {getattr(loss, 'gradient_' + t)}"
        for t in ("forces", "stress")
        if getattr(loss, "gradient_" + t) is not None and getattr(stage, t) is not None
    ]
    if fixed:
        changes.append(f"gradient terms unchanged ({', '.join(fixed)})")
    return ", ".join(changes)


def _evaluate(eval_step, mesh, params, loader) -> dict:
    """MAEs and mean loss over a whole split (the remainder after full batches is dropped), and
    ``atoms_per_s``: the evaluation throughput (efs of every atom) after the first batch."""
    totals: dict = {}
    n_batches = 0
    timed_atoms, timed_s = 0, 0.0  # inference throughput, first (compiling) batch excluded
    for _, (graph, targets, groups) in loader.epoch(0):
        t0 = time.perf_counter()
        m = jax.device_get(eval_step(params, shard_batch(mesh, graph), shard_batch(mesh, targets)))
        if n_batches:
            timed_s += time.perf_counter() - t0
            timed_atoms += int(sum(loader.sizes[g, 0].sum() for g in groups))  # no label read
        for key, value in m.items():
            weight = m.get(f"count_{key[4:]}", 1.0) if key.startswith("mae_") else 1.0
            totals[key] = totals.get(key, 0.0) + float(value) * float(weight)
        n_batches += 1
    out = {"loss": totals["loss"] / max(n_batches, 1)}
    if timed_s > 0:  # energy, forces and stress of every atom, as in inference
        out["atoms_per_s"] = timed_atoms / timed_s
    for key in [k for k in totals if k.startswith("mae_")]:
        count = totals.get(f"count_{key[4:]}", 0.0)
        if count:  # targets without any label in this split are left out
            out[key] = totals[key] / count
    return out


def _evaluation_text(loaders: dict[str, Loader], limit: int) -> str:
    """The log line saying how many structures of the val and test splits are evaluated."""
    parts = []
    for name in ("val", "test"):
        loader = loaders[name]
        parts.append(f"{name} {loader.steps_per_epoch * loader.batch_size} of {len(loader.graphs)}")
    how = (
        f"a fixed seeded sample of at most train.eval_max_structures={limit}"
        if limit
        else "whole splits; train.eval_max_structures=N bounds them"
    )
    return f"evaluation: {', '.join(parts)} structures ({how}; a last partial batch is dropped)"


@dataclasses.dataclass
class _Run:
    """Everything a training run holds between its setup, epochs, evaluations and finish."""

    config: ExperimentConfig
    run_dir: Path
    mesh: Any
    loaders: dict[str, Loader]
    train_set: list
    params: dict
    state: Any
    checkpoints: Checkpoints
    log: MetricsLog
    primary: bool
    total_steps: int
    stage_two_from: int | None
    train_step: Any
    eval_step: Any
    baseline: dict
    start_epoch: int = 0
    start_step: int = 0
    n_seen: int = 0
    t_start: float = 0.0
    val: dict = dataclasses.field(default_factory=dict)
    bar: Any = None
    learning_rate: Any = None  # the optimizer's schedule: step -> learning rate

    def meta(self, epoch: int, next_step: int) -> dict:
        return {"config": to_dict(self.config), "epoch": epoch, "next_step": next_step}


def _same_model(config: ExperimentConfig):
    """Whether a checkpoint's model section (any format, legacy flat ones included) describes
    ``config``'s model."""

    def same(section: dict) -> bool:
        try:
            return model_spec(section, saved=True) == config.model
        except (ValueError, TypeError):
            return False

    return same


def _setup(config: ExperimentConfig, resume: bool) -> _Run:
    """Data, splits, loaders, model, params, optimizer, steps and checkpoints of a run (restored
    from the latest checkpoint with ``resume``)."""
    run_dir = Path(config.train.run_dir)
    # checks before the data, which can take long to make
    module = build_model(config.model)
    check_emulation_covers(
        module.config.DENSE_ONLY, config.train.matmul_precision, f"model {config.model.name!r}"
    )
    if config.model.init_from:
        check_init_from(config.model)
    run_dir.mkdir(parents=True, exist_ok=True)
    mesh = make_mesh(config.train.devices)
    # this process reads only its own devices' shares of each batch
    local = [i for i, d in enumerate(mesh.devices.flat) if d.process_index == jax.process_index()]
    streamed = open_streamed(config)
    if streamed is None:
        structures = load_structures(config)
        train_set, val_set, test_set = split_by_group(
            structures, tuple(config.data.fractions), seed=config.data.seed
        )
        if jax.process_index() == 0:
            tqdm.write(
                f"data: {len(structures)} structures from {config.data.source!r} held in memory "
                "(a dataset built with `equijax data build` is streamed from disk instead)",
                file=sys.stderr,
            )
        parts = {
            name: (structure_graphs(split, config.model), split, None)
            for name, split in (("train", train_set), ("val", val_set), ("test", test_set))
        }
        baseline = {
            k: v
            for k, v in per_element_linear_baseline(train_set, val_set, skip_unseen=True).items()
            if k != "coefficients"
        }
        atomref = None
    else:
        parts, baseline, atomref = streamed.splits, streamed.baseline, streamed.atomref
        train_set = parts["train"][1]
    batch, limit = config.data.batch_size, config.train.eval_max_structures
    loaders: dict[str, Loader] = {}
    for name, (graphs, labels, sizes) in parts.items():
        train = name == "train"
        n_used = len(labels) if train or not limit else min(limit, len(labels))
        loaders[name] = Loader(
            graphs,
            labels,
            batch if train else min(batch, n_used),
            mesh.size,
            config.train.seed,
            shuffle=train,
            prefetch=config.train.prefetch,
            sizes=sizes,
            local_devices=local,
            # val and test pad to the train split's buckets: one evaluation step for both
            mean_sizes=None if train else loaders["train"].mean_sizes,
            max_structures=0 if train else limit,
        )
    if jax.process_index() == 0:
        tqdm.write(_evaluation_text(loaders, limit), file=sys.stderr)
    total_steps = config.train.max_steps or config.train.epochs * loaders["train"].steps_per_epoch
    stage_two_from = stage_two_start_step(config.loss.stage_two, total_steps)

    example = jax.tree_util.tree_map(lambda x: x[local[0]], loaders["train"].batch(0, 0)[0])
    params = initial_params(config, module, example, train_set, atomref=atomref)
    optimizer = make_optimizer(config.optim, total_steps, frozen_collections(config, params))
    state = init_state(params, optimizer, config.train.seed)
    checkpoints = Checkpoints(run_dir, keep=config.train.keep_checkpoints)
    primary = jax.process_index() == 0  # one writer of the run's files in a multi-host run
    log = MetricsLog(run_dir, enabled=primary)
    start_epoch = start_step = 0
    if resume:
        restored = checkpoints.restore_latest(state, _same_model(config))
        if restored is not None:
            state, meta = restored
            start_epoch, start_step = meta["epoch"], meta["next_step"]
            log.truncate_after(int(state.step))
    if primary and (not resume or int(state.step) == 0) and log.path.exists():
        log.path.unlink()  # a fresh start (also a resume that found no checkpoint)
    if primary:  # after the check
        (run_dir / "config.json").write_text(json.dumps(to_dict(config), indent=1))
    # after the checkpoint was accepted: a refused resume leaves the run directory untouched
    log.attach(make_loggers(config.log, run_dir, to_dict(config), primary))
    precision = config.train.matmul_precision
    train_step = with_matmul_precision(
        make_train_step(
            module,
            optimizer,
            config.loss,
            mesh,
            config.optim.ema_decay,
            config.train.conservative_every,
            stage_two_from,
        ),
        precision,
    )
    eval_step = with_matmul_precision(make_eval_step(module, config.loss, mesh), precision)
    return _Run(
        config,
        run_dir,
        mesh,
        loaders,
        train_set,
        params,
        replicate(mesh, state),
        checkpoints,
        log,
        primary,
        total_steps,
        stage_two_from,
        train_step,
        eval_step,
        baseline,
        start_epoch,
        start_step,
        learning_rate=learning_rate_schedule(config.optim, total_steps),
    )


def _train_epoch(run: _Run, epoch: int) -> None:
    """Train one epoch (from ``run.start_step`` in the first, resumed one), checkpointing as
    configured; stops early at the run's last step. Raises `TrainingDiverged` on a NaN/inf."""
    config, loader = run.config, run.loaders["train"]
    for step, (graph, targets, groups) in loader.epoch(epoch, run.start_step):
        run.state, m = run.train_step(
            run.state, shard_batch(run.mesh, graph), shard_batch(run.mesh, targets)
        )
        global_step = int(run.state.step)
        loss = float(m["loss"])
        if not np.isfinite(loss):
            ids = [getattr(run.train_set[i], "id", str(i)) for g in groups for i in g]
            raise TrainingDiverged(
                f"loss is {loss} at step {global_step} (epoch {epoch}, batch {step}); structures: "
                f"{ids[:20]}{' ...' if len(ids) > 20 else ''}. The last good checkpoint "
                f"(step {run.checkpoints.latest_step()}) in {run.run_dir} is intact."
            )
        if run.stage_two_from is not None and global_step == run.stage_two_from + 1:
            run.bar.write(
                f"step {run.stage_two_from}: stage two of the loss begins "
                f"({_stage_two_text(config)})"
            )
        run.n_seen += config.data.batch_size
        elapsed = time.perf_counter() - run.t_start
        rate = run.n_seen / elapsed
        run.log.write(
            {
                "split": "train",
                "step": global_step,
                "epoch": epoch,
                **{k: v for k, v in jax.device_get(m).items() if not k.startswith("count_")},
                "learning_rate": float(run.learning_rate(global_step - 1)),
                "structures_per_s": rate,
                "data_wait_fraction": loader.wait_seconds / elapsed,
            }
        )
        run.bar.update(1)
        run.bar.set_postfix(loss=f"{loss:.4f}", struct_per_s=f"{rate:.1f}")
        done = global_step >= run.total_steps
        last_of_epoch = step == loader.steps_per_epoch - 1
        if global_step % config.train.checkpoint_every_steps == 0 or done:
            next_epoch, next_step = (epoch + 1, 0) if last_of_epoch else (epoch, step + 1)
            run.checkpoints.save(global_step, run.state, run.meta(next_epoch, next_step))
        if done:
            break
    run.start_step = 0


def _validate(run: _Run, epoch: int) -> None:
    """Evaluate the EMA params on the validation split, log it and offer the best checkpoint."""
    run.val = _evaluate(run.eval_step, run.mesh, run.state.ema_params, run.loaders["val"])
    step = int(run.state.step)
    run.log.write({"split": "val", "step": step, "epoch": epoch, **run.val})
    run.checkpoints.save_best(step, run.state, run.meta(epoch + 1, 0), run.val["loss"])
    run.bar.write(
        f"epoch {epoch}: val MAE energy {run.val['mae_energy']:.4f} eV/atom, "
        f"forces {run.val['mae_forces']:.4f} eV/Å"
    )


def _finish(run: _Run) -> dict:
    """Test-set metrics, the run's ``result.json``, CSV log and learning-curve plot."""
    run.bar.close()
    test = _evaluate(run.eval_step, run.mesh, run.state.ema_params, run.loaders["test"])
    run.log.write({"split": "test", "step": int(run.state.step), **test})
    if run.primary:
        run.log.write_csv()
    elapsed = time.perf_counter() - run.t_start
    n_seen = run.n_seen
    result = {
        "steps": int(run.state.step),
        "val": run.val,
        "test": test,
        "evaluated_structures": {
            name: run.loaders[name].steps_per_epoch * run.loaders[name].batch_size
            for name in ("val", "test")
        },
        "baseline_val": run.baseline,
        "wall_s": elapsed,  # the epochs and evaluations (data and graphs before them excluded)
        "date": datetime.date.today().isoformat(),
        "structures_per_s": n_seen / elapsed if n_seen else 0.0,
        "data_wait_fraction": (run.loaders["train"].wait_seconds / elapsed if n_seen else 0.0),
        "devices": run.mesh.size,
        "num_params": count_params(run.params),
        "run_dir": str(run.run_dir),
    }
    if run.primary:
        (run.run_dir / "result.json").write_text(json.dumps(result, indent=1, default=float))
    try:
        if run.primary:
            run.log.plot(
                baseline={
                    "mae_energy": run.baseline["energy_mae_per_atom"],
                    "mae_forces": run.baseline["force_mae_zero"],
                }
            )
    except (KeyError, ValueError):
        pass
    run.checkpoints.close()
    return result


def train(config: ExperimentConfig, resume: bool = False) -> dict:
    """Train, evaluate and checkpoint as ``config`` says; returns the final metrics.

    With ``resume``, continues from the latest checkpoint in ``config.train.run_dir`` exactly
    (same batches, same RNG, same optimizer state).
    """
    run = _setup(config, resume)
    try:
        return _run_epochs(config, run)
    finally:
        run.log.close()  # the scalar loggers' files, also after an error


def _run_epochs(config: ExperimentConfig, run: _Run) -> dict:
    run.bar = tqdm(
        total=run.total_steps,
        initial=int(run.state.step),
        disable=not config.train.progress,
        desc="train",
        unit="step",
    )
    run.t_start = time.perf_counter()
    for epoch in range(run.start_epoch, config.train.epochs):
        _train_epoch(run, epoch)
        done = int(run.state.step) >= run.total_steps
        if (epoch + 1) % config.train.eval_every_epochs == 0 or done:
            _validate(run, epoch)
        if done:
            break
    return _finish(run)
