"""`equijax bench train-quality`: equijax's training recipe against chgnet's own ``Trainer`` on
the same small CHGNet, data, splits, batch size, epochs, targets and loss.

For each data set (``emt_small``: efs; ``teacher_2000``: efsm) and seed, the experiment
``chgnet_emt_small`` (model ``chgnet_small``) is trained twice:

- equijax: `equijax.training.train` with the config as it is (``train.seed`` = the seed; the
  data set's group and, for the teacher set, ``loss.magmoms=0.1``), plus any ``overrides``;
- chgnet: `train_quality_reference.train_reference`, chgnet's ``Trainer`` on a chgnet
  ``CHGNet`` of the same architecture (`train_quality_reference.chgnet_kwargs`), fed exactly
  equijax's train/val/test split (`splits`), with the same batch size, epochs, peak learning
  rate, final learning-rate fraction, loss kind, Huber delta and loss weights.

Both final models (equijax: its EMA params, which its own evaluation uses; chgnet: its
parameters after the last epoch) are scored on the whole val and test splits by one function,
`equijax.training.evaluate.mean_absolute_errors`. Recipe differences that remain (chgnet's
Trainer has no warm-up, no EMA, no gradient clipping, and steps its cosine schedule 10 times per
epoch instead of every step; the inits differ) are listed in the JSON under ``differences``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from equijax.bench import train_quality_reference
from equijax.bench.common import Table, machine_info, write_json
from equijax.data import split_by_group
from equijax.models.chgnet.pretrained import convert_state_dict
from equijax.models.param_cache import default_cache_dir
from equijax.potential import Potential
from equijax.training.config import ExperimentConfig, load_config
from equijax.training.data_source import load_structures, structure_graphs
from equijax.training.evaluate import mean_absolute_errors
from equijax.training.loop import train
from equijax.training.model_setup import atomref_weights, build_model, count_params
from equijax.training.teacher import GENERATOR_VERSION, generate_teacher_dataset
from equijax.training.trained import load_trained

EXPERIMENT = "chgnet_emt_small"
DATASETS = {"emt_small": "efs", "teacher_2000": "efsm"}  # data group -> targets
SIDES = ("equijax", "chgnet")
ERRORS = (("energy", "E", 4), ("forces", "F", 4), ("stress", "σ", 3), ("magmoms", "m", 4))
DIFFERENCES = [
    "warm-up: equijax ramps the learning rate linearly from 0 over optim.warmup_steps; chgnet's "
    "Trainer (CosLR) starts at the peak",
    "schedule steps: equijax's cosine decays every step; chgnet's CosLR steps 10 times per epoch "
    "(T_max = 10 epochs), to the same final fraction",
    "EMA: equijax evaluates an exponential moving average of the params (optim.ema_decay); "
    "chgnet's Trainer has none (its final params are scored)",
    "gradient clipping: equijax clips the global norm at optim.clip_norm; chgnet's Trainer does "
    "not clip",
    "init: flax initialisers in equijax, torch's in chgnet (same architecture and param count)",
    "batch order: both shuffle the train split each epoch and drop its last partial batch, with "
    "different random streams",
]


def teacher_source(n_structures: int) -> str:
    """The cached 2000-structure teacher set's extxyz (labelled first if absent): a smaller
    teacher set is its first ``n_structures``, read as a file source."""
    name = f"teacher-v{GENERATOR_VERSION}-chgnet0.3.0-seed0-n2000.extxyz"
    path = default_cache_dir() / "teacher" / name
    if not path.exists():
        generate_teacher_dataset(2000, seed=0)
    return str(path)


def experiment_config(
    data: str,
    seed: int,
    run_dir: str,
    epochs: int | None = None,
    n_structures: int | None = None,
    overrides: tuple[str, ...] = (),
) -> ExperimentConfig:
    """The equijax config of one run: ``chgnet_emt_small`` with model ``chgnet_small`` (CHGNet's
    own architecture, readout layer norm included, fixed here so the bench does not follow the
    demo's model) on ``data`` with ``train.seed`` ``seed``, optionally fewer/more ``epochs`` or
    ``n_structures`` (a teacher subset is the first N of the cached 2000), and ``overrides``
    last."""
    items = ["model=chgnet_small", f"data={data}", f"train.seed={seed}", f"train.run_dir={run_dir}"]
    items.append("train.progress=false")
    if "m" in DATASETS[data]:
        items.append("loss.magmoms=0.1")  # chgnet_emt_small sets 0 (EMT has no magmoms)
    if epochs:
        items.append(f"train.epochs={epochs}")
    if n_structures:
        items.append(f"data.n_structures={n_structures}")
        if data == "teacher_2000" and n_structures != 2000:
            items.append(f"data.source={teacher_source(n_structures)}")
    return load_config(EXPERIMENT, [*items, *overrides])


def splits(config: ExperimentConfig) -> tuple[list, list, list]:
    """The train, val and test structures of ``config``, as `equijax.training.train` makes them
    (`load_structures`, then `split_by_group` with ``data.fractions`` and ``data.seed``)."""
    structures = load_structures(config)
    return split_by_group(structures, tuple(config.data.fractions), seed=config.data.seed)


def _epoch_seconds(run_dir: str, batch_size: int) -> list[float]:
    """Wall seconds of each training epoch from the run's metrics.jsonl (the elapsed time at an
    epoch's last step is steps x batch / the cumulative structures_per_s logged there)."""
    end: dict[int, float] = {}
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("split") == "train":
            end[record["epoch"]] = record["step"] * batch_size / record["structures_per_s"]
    ends = [end[e] for e in sorted(end)]
    return [b - a for a, b in zip([0.0, *ends[:-1]], ends)]


def _steady(epoch_seconds: list[float], eval_every: int) -> float:
    """Median seconds of the epochs after the first (which compiles) that no validation
    precedes (equijax validates after epoch e - 1 when e % eval_every == 0)."""
    clean = [t for e, t in enumerate(epoch_seconds) if e and e % eval_every]
    later = clean or epoch_seconds[1:] or epoch_seconds
    return float(np.median(later))


def raw_params(run_dir: str) -> dict:
    """The raw (not EMA) params of a run's latest checkpoint."""
    manager = ocp.CheckpointManager(
        Path(run_dir).absolute() / "checkpoints",
        options=ocp.CheckpointManagerOptions(create=False),
    )
    state = ocp.args.Composite(state=ocp.args.StandardRestore())
    restored = manager.restore(manager.latest_step(), args=state)
    manager.close()
    return {"params": restored["state"]["params"]["params"]}


def score_run(run_dir: str, parts: tuple[list, list, list]) -> dict:
    """MAEs of a finished equijax run's final params on the whole val and test splits of
    ``parts``: ``val``/``test`` with its EMA params (what it evaluates with), ``val_raw``/
    ``test_raw`` with the raw params (chgnet's Trainer has no EMA)."""
    module, ema = load_trained(run_dir, which="latest")
    out = {}
    for suffix, params in (("", ema), ("_raw", raw_params(run_dir))):
        potential = Potential(module, params)
        for name, structures in zip(("val", "test"), parts[1:]):
            predictions = potential.predict([s.atoms for s in structures], batch_size=16)
            out[name + suffix] = mean_absolute_errors(predictions, structures)
    return out


def train_equijax(config: ExperimentConfig, parts: tuple[list, list, list]) -> dict:
    """Train with `equijax.training.train` and score its final EMA params on the whole val and
    test splits of ``parts`` (the structures the run itself split off)."""
    t0 = time.perf_counter()
    result = train(config)
    wall = time.perf_counter() - t0
    errors = score_run(config.train.run_dir, parts)
    epoch_seconds = _epoch_seconds(config.train.run_dir, config.data.batch_size)
    return {
        **errors,
        "seconds_per_epoch": _steady(epoch_seconds, config.train.eval_every_epochs),
        "epoch_seconds": epoch_seconds,
        "train_wall_s": wall,
        "steps": result["steps"],
        "params": {"total": result["num_params"]},
        # the loop's own last validation (EMA params, whole batches only)
        "loop_val_mae": {k: v for k, v in result["val"].items() if k.startswith("mae_")},
    }


def architecture_check(config: ExperimentConfig, structures: list) -> dict:
    """Whether both sides build the same function: a fresh chgnet model's weights converted to
    equijax params (`convert_state_dict`, which refuses a checkpoint with any tensor left over)
    give the same energies and forces on ``structures``."""
    module = build_model(config.model)
    torch_model = train_quality_reference.build_model(module.config, structures, seed=0)
    params = convert_state_dict(torch_model.state_dict(), module.config)
    ours = Potential(module, params).predict([s.atoms for s in structures], batch_size=16)
    theirs = train_quality_reference.predict(torch_model, structures, "efs")
    fresh = module.init(jax.random.key(0), structure_graphs(structures[:1], config.model)[0])
    de = max(abs(a["energy_per_atom"] - b["energy_per_atom"]) for a, b in zip(ours, theirs))
    df = max(float(np.abs(a["forces"] - b["forces"]).max()) for a, b in zip(ours, theirs))
    return {
        "structures": len(structures),
        "max_abs_energy_per_atom_diff": float(de),
        "max_abs_force_diff": df,
        "chgnet_params": train_quality_reference.param_counts(torch_model),
        "equijax_params": count_params(fresh),
    }


def _mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summarize(runs: dict) -> dict:
    """Per data set and side: mean and sample std over seeds of every val/test MAE and of the
    seconds per epoch; and per target, equijax's mean over chgnet's and whether equijax is
    worse beyond seed noise (mean difference > 2 standard errors of the difference)."""
    out: dict = {}
    for data, per_seed in runs.items():
        sides: dict = {}
        for side in SIDES:
            done = [r[side] for r in per_seed.values() if side in r]
            if not done:
                continue
            stats = {"seeds": len(done)}
            for split in [k for k in ("val", "test", "val_raw", "test_raw") if k in done[0]]:
                for key in done[0][split]:
                    stats[f"{split}_{key}"] = _mean_std([r[split][key] for r in done])
            stats["seconds_per_epoch"] = _mean_std([r["seconds_per_epoch"] for r in done])
            # the least-contended epoch after the first (compiles, builds chgnet's graphs)
            stats["min_seconds_per_epoch"] = float(
                min(min(r["epoch_seconds"][1:] or r["epoch_seconds"]) for r in done)
            )
            sides[side] = stats
        compared = {}
        if len(sides) == 2:
            eq, ch = sides["equijax"], sides["chgnet"]
            for key in [k for k in eq if k.startswith(("val_", "test_")) and k in ch]:
                (m1, s1), (m2, s2) = eq[key], ch[key]
                n1, n2 = eq["seeds"], ch["seeds"]
                noise = 2 * np.sqrt(s1**2 / n1 + s2**2 / n2)
                compared[key] = {
                    "ratio": m1 / m2 if m2 else None,
                    "worse_beyond_noise": bool(m1 - m2 > noise),
                    "better_beyond_noise": bool(m2 - m1 > noise),
                }
        out[data] = {**sides, "equijax_vs_chgnet": compared}
    return out


def _cell(stat, digits: int) -> str:
    mean, std = stat
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def table(summary: dict, split: str) -> Table:
    """Mean ± std over seeds of the ``split`` MAEs and seconds per epoch, per data set and
    side, with equijax's ratio to chgnet's (``*``: worse beyond seed noise)."""
    t = Table(
        f"{split} MAE (final params; mean ± std over seeds): E eV/atom, F eV/Å, σ GPa, m μB",
        ["data", "side", "seeds", "E", "F", "σ", "m", "s/epoch"],
    )
    for data, sides in summary.items():
        for side in SIDES:
            if side not in sides:
                continue
            st = sides[side]
            cells = [
                _cell(st[f"{split}_mae_{key}"], d) if f"{split}_mae_{key}" in st else "-"
                for key, _, d in ERRORS
            ]
            t.add(data, side, st["seeds"], *cells, _cell(st["seconds_per_epoch"], 1))
        compared = sides["equijax_vs_chgnet"]
        if compared:
            cells = []
            for key, _, _ in ERRORS:
                c = compared.get(f"{split}_mae_{key}")
                mark = "" if c is None else "*" if c["worse_beyond_noise"] else ""
                cells.append("-" if c is None else f"{c['ratio']:.2f}x{mark}")
            t.add(data, "equijax / chgnet", "", *cells, "")
    return t


def run(
    out: str | None = "results/bench_train_quality.json",
    datasets: tuple[str, ...] = tuple(DATASETS),
    seeds: tuple[int, ...] = (0, 1, 2),
    epochs: int | None = None,
    n_structures: dict[str, int] | None = None,
    sides: tuple[str, ...] = SIDES,
    overrides: tuple[str, ...] = (),
    run_root: str = "runs/train_quality",
) -> dict:
    """Train every (data set, seed, side), print a progress line per run and the val and test
    tables, and write the JSON (rewritten after every run with ``"complete": false``).
    ``n_structures``: per data set, the structures to use (default: the data group's);
    ``overrides``: equijax config overrides (``key=value``) for its side only."""
    bad = [d for d in datasets if d not in DATASETS] + [s for s in sides if s not in SIDES]
    if bad:
        raise ValueError(f"unknown data sets or sides: {bad} (data: {list(DATASETS)})")
    threads = os.cpu_count() or 1  # XLA's CPU client uses every core; torch gets as many
    results: dict = {
        "benchmark": "train-quality",
        "machine": machine_info(),
        "experiment": EXPERIMENT,
        "seeds": list(seeds),
        "sides": list(sides),
        "equijax_overrides": list(overrides),
        "torch_threads": threads,
        "differences": DIFFERENCES,
        "datasets": {},
        "runs": {},
    }
    for data in datasets:
        n = (n_structures or {}).get(data)
        base = experiment_config(data, 0, f"{run_root}/{data}/seed0", epochs, n, overrides)
        parts = splits(base)
        targets = DATASETS[data]
        module = build_model(base.model)
        print(
            f"{data}: {sum(map(len, parts))} structures, train/val/test "
            f"{'/'.join(str(len(p)) for p in parts)}, targets {targets}, "
            f"{base.train.epochs} epochs at batch {base.data.batch_size}",
            flush=True,
        )
        info = {
            "targets": targets,
            "n_structures": sum(map(len, parts)),
            "split_sizes": [len(p) for p in parts],
            "epochs": base.train.epochs,
            "batch_size": base.data.batch_size,
            "steps_per_epoch": len(parts[0]) // base.data.batch_size,
            "learning_rate": base.optim.learning_rate,
            "final_lr_fraction": base.optim.final_lr_fraction,
            "warmup_steps": base.optim.warmup_steps,
            "ema_decay": base.optim.ema_decay,
            "clip_norm": base.optim.clip_norm,
            "loss": {
                "kind": base.loss.kind,
                "delta": base.loss.delta,
                **{t: getattr(base.loss, t) for t in ("energy", "forces", "stress", "magmoms")},
            },
            "model": base.model.to_dict(),
        }
        if "chgnet" in sides:
            info["architecture_check"] = architecture_check(base, parts[1][:4])
            print(f"  architecture check: {info['architecture_check']}", flush=True)
        results["datasets"][data] = info
        results["runs"][data] = {}
        for seed in seeds:
            config = experiment_config(
                data, seed, f"{run_root}/{data}/seed{seed}", epochs, n, overrides
            )
            record = results["runs"][data][str(seed)] = {}
            if "equijax" in sides:
                print(f"  {data} seed {seed}: equijax ...", flush=True)
                record["equijax"] = train_equijax(config, parts)
                _say(record["equijax"])
                write_json(results | {"complete": False}, out, say=False)
            if "chgnet" in sides:
                print(f"  {data} seed {seed}: chgnet Trainer ...", flush=True)
                ref = train_quality_reference.train_reference(
                    module.config,
                    parts,
                    targets=targets,
                    seed=seed,
                    epochs=config.train.epochs,
                    batch_size=config.data.batch_size,
                    learning_rate=config.optim.learning_rate,
                    final_lr_fraction=config.optim.final_lr_fraction,
                    loss_kind=config.loss.kind,
                    delta=config.loss.delta,
                    weights={
                        t: getattr(config.loss, t)
                        for t in ("energy", "forces", "stress", "magmoms")
                    },
                    threads=threads,
                    mae_fn=mean_absolute_errors,
                )
                # chgnet's AtomRef.fit against equijax's fit on the same train split (eV)
                ref["atomref_max_abs_diff_vs_equijax"] = float(
                    np.abs(ref.pop("atomref") - atomref_weights(parts[0])).max()
                )
                record["chgnet"] = ref
                _say(ref)
                write_json(results | {"complete": False}, out, say=False)
    results["summary"] = summarize(results["runs"])
    for split in ("val", "test"):
        table(results["summary"], split).print()
    print(f"machine: {results['machine']['summary']}; jax {jax.__version__}")
    results["complete"] = True
    write_json(results, out)
    return results


def _say(r: dict) -> None:
    val = ", ".join(f"{k[4:]} {v:.4g}" for k, v in r["val"].items())
    print(
        f"    val MAE {val}; {r['seconds_per_epoch']:.1f} s/epoch, {r['steps']} steps, "
        f"{r['train_wall_s']:.0f} s wall",
        flush=True,
    )


def markdown(results: dict) -> str:
    """The side-by-side table of a results JSON as Markdown (docs/experiments.md): per data
    set and side, mean ± std over seeds of every val and test MAE and of s/epoch; equijax's raw
    (non-EMA) params as a third row; and equijax / chgnet per target (``*``: worse beyond seed
    noise, ``†``: better beyond it)."""
    head = (
        "| data | side | split | E (eV/atom) | F (eV/Å) | σ (GPa) | m (μB) "
        "| s/epoch (median; fastest) |"
    )
    lines = [head, "|" + "---|" * 8]
    for data, sides in results["summary"].items():
        rows = [(s, s, "") for s in SIDES if s in sides]
        if "val_raw_mae_energy" in sides.get("equijax", {}):
            rows.insert(1, ("equijax", "equijax, raw params (no EMA)", "_raw"))
        for split in ("val", "test"):
            for side, label, suffix in rows:
                st = sides[side]
                cells = [
                    _cell(st[key], d) if (key := f"{split}{suffix}_mae_{k}") in st else "-"
                    for k, _, d in ERRORS
                ]
                seconds = (
                    f"{_cell(st['seconds_per_epoch'], 1)}; {st['min_seconds_per_epoch']:.1f}"
                    if not suffix and split == "val"
                    else ""
                )
                lines.append(
                    f"| {data} | {label} | {split} | " + " | ".join(cells) + f" | {seconds} |"
                )
            compared = sides["equijax_vs_chgnet"]
            if compared:
                cells = []
                for k, _, _ in ERRORS:
                    c = compared.get(f"{split}_mae_{k}")
                    mark = (
                        ""
                        if c is None
                        else "*"
                        if c["worse_beyond_noise"]
                        else "†"
                        if c["better_beyond_noise"]
                        else ""
                    )
                    cells.append("-" if c is None else f"{c['ratio']:.2f}x{mark}")
                lines.append(
                    f"| {data} | equijax / chgnet | {split} | " + " | ".join(cells) + " | |"
                )
    return "\n".join(lines)
