"""`train(config)`: data -> graphs -> CHGNet -> data-parallel steps, with validation, metrics,
checkpoints (exact resume) and a clear stop on a NaN/inf loss."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from equijax.graphs import atoms_to_graph
from equijax.graphs.validation import StructureLabel
from equijax.models.chgnet import CHGNet, CHGNetConfig
from equijax.nn.precision import check_emulation_covers, with_matmul_precision
from equijax.nn.readout import MAX_ELEMENTS
from equijax.training.checkpoint import Checkpoints
from equijax.training.config import ExperimentConfig, ModelConfig, stage_two_start_step, to_dict
from equijax.training.loader import Loader
from equijax.training.loss import TARGETS
from equijax.training.metrics import MetricsLog
from equijax.training.step import (
    init_state,
    make_eval_step,
    make_mesh,
    make_optimizer,
    make_train_step,
    replicate,
    shard_batch,
)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the message names the step and the structures."""


def chgnet_config(model: ModelConfig) -> CHGNetConfig:
    """The `CHGNetConfig` of a training `ModelConfig`."""
    h = (model.hidden_dim,)
    return CHGNetConfig(
        atom_fea_dim=model.atom_fea_dim, bond_fea_dim=model.bond_fea_dim,
        angle_fea_dim=model.angle_fea_dim, num_radial=model.num_radial,
        num_angular=model.num_angular, n_conv=model.n_conv, atom_conv_hidden_dim=h,
        bond_conv_hidden_dim=h, mlp_hidden_dims=tuple(model.mlp_hidden_dims),
        atom_graph_cutoff=model.atom_graph_cutoff, bond_graph_cutoff=model.bond_graph_cutoff,
        composition_model=model.composition_model, remat=model.remat, **direct_options(model))


def direct_options(model: ModelConfig) -> dict:
    """The `CHGNetConfig` fields of a training `ModelConfig` that shape the direct heads."""
    return dict(forces=model.forces, direct_stress=model.direct_stress,
                direct_hidden_dims=tuple(model.direct_hidden_dims), direct_norm=model.direct_norm,
                direct_angle_stress=model.direct_angle_stress,
                direct_angle_forces=model.direct_angle_forces,
                direct_pair_energy=model.direct_pair_energy,
                direct_angle_energy=model.direct_angle_energy,
                direct_trunk_grad=model.direct_trunk_grad)


def build_model(model: ModelConfig):
    """The flax module named by ``model.name`` ("chgnet" or "equivariant"); with
    ``model.pretrained``, the pretrained CHGNet's architecture."""
    if model.pretrained:
        from equijax.models.chgnet_pretrained import PRESETS

        return CHGNet(dataclasses.replace(PRESETS[model.pretrained], **direct_options(model),
                                          remat=model.remat))
    if model.name == "equivariant":
        from equijax.models.equivariant import EquivariantConfig, EquivariantPotential

        return EquivariantPotential(EquivariantConfig(
            channels=model.channels, lmax=model.lmax, num_layers=model.num_layers,
            cutoff=model.atom_graph_cutoff, num_radial=model.spline_basis, tp=model.tp,
            radial=model.radial, self_interaction=model.self_interaction, parity=model.parity,
            composition_model=model.composition_model, forces=model.forces,
            direct_stress=model.direct_stress, direct_norm=model.direct_norm))
    return CHGNet(chgnet_config(model))


def load_structures(config: ExperimentConfig) -> list:
    """The labelled structures named by ``config.data.source``."""
    from equijax import data

    source, n = config.data.source, config.data.n_structures
    if source == "emt":
        return data.generate_emt_dataset(n, seed=config.data.seed, progress=config.train.progress)
    if source == "teacher":
        return data.generate_teacher_dataset(n, seed=config.data.seed,
                                             cache_dir=config.data.cache_dir,
                                             progress=config.train.progress)
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"data.source {source!r}: no such file")
    if path.suffix == ".json":
        out = data.read_mptrj_json(path)
        structures = out[0] if isinstance(out, tuple) else out
    elif path.suffix == ".db":
        structures = data.read_ase_db(path)
    else:
        structures = data.read_ase(path)
    return structures[:n] if n else structures


def fit_atomref(structures) -> np.ndarray:
    """Per-element energies (94,) eV: least squares of energy per atom on composition fractions
    (chgnet's AtomRef fit); elements absent from the data get 0."""
    rows, targets = [], []
    for s in structures:
        if s.energy is None:
            continue
        counts = np.bincount(s.atoms.numbers - 1, minlength=MAX_ELEMENTS)
        rows.append(counts / len(s.atoms))
        targets.append(s.energy / len(s.atoms))
    if not rows:
        return np.zeros(MAX_ELEMENTS, np.float32)
    weights = np.linalg.lstsq(np.array(rows), np.array(targets), rcond=None)[0]
    return weights.astype(np.float32)


def graph_cutoffs(model: ModelConfig) -> tuple[float, float]:
    """(atom graph, bond graph) cutoffs in Å: the pretrained model's when fine-tuning."""
    if model.pretrained:
        from equijax.models.chgnet_pretrained import PRESETS

        preset = PRESETS[model.pretrained]
        return preset.atom_graph_cutoff, preset.bond_graph_cutoff
    return model.atom_graph_cutoff, model.bond_graph_cutoff


def initial_params(config: ExperimentConfig, module, example, train_set) -> dict:
    """Fresh params (AtomRef fitted on ``train_set``), the pretrained CHGNet's, or another run's
    (``model.init_from``, merged into fresh params with `transfer_params`) for fine-tuning."""
    if config.model.pretrained:
        from equijax.models.chgnet_pretrained import from_pretrained

        params = from_pretrained(config.model.pretrained)[1]
        if config.model.forces == "direct":  # fresh direct heads on the pretrained trunk
            fresh = module.init(jax.random.key(config.train.seed), example)
            params = {"params": {**fresh["params"], **params["params"]}}
        if config.model.refit_atomref:
            params["params"]["atomref"]["weights"] = fit_atomref(train_set)
        return params
    params = module.init(jax.random.key(config.train.seed), example)
    if config.model.composition_model:
        params["params"]["atomref"]["weights"] = fit_atomref(train_set)
    if config.model.init_from:
        from equijax.training.trained import (
            check_init_from,
            load_trained,
            transfer_params,
        )

        check_init_from(config.model)  # also when called outside `train` (which checks early)
        params, report = transfer_params(params, load_trained(config.model.init_from)[1])
        if jax.process_index() == 0:  # also without progress bars: sweeps keep it in log.txt
            tqdm.write(f"init_from {config.model.init_from}: {len(report['copied'])} arrays "
                       f"copied; fresh: {report['fresh'] or 'none'}; dropped: "
                       f"{report['dropped'] or 'none'}")
        if config.model.refit_atomref and "atomref" in params["params"]:
            params["params"]["atomref"]["weights"] = fit_atomref(train_set)
    return params


def frozen_collections(config: ExperimentConfig, params: dict) -> tuple[str, ...]:
    """Top-level param collections the optimizer leaves fixed: the AtomRef and ``optim.freeze``.

    Raises `ValueError` naming ``optim.freeze`` for a name the model does not have."""
    names = sorted(params["params"])
    unknown = [n for n in config.optim.freeze if n not in names]
    if unknown:
        raise ValueError(f"config key 'optim.freeze': {unknown} are not parameter collections of "
                         f"this model (available: {names})")
    return ("atomref", *config.optim.freeze)


def count_params(params: dict) -> int:
    """Number of scalar parameters."""
    return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(params)))


def _graphs(structures, model: ModelConfig) -> list:
    atom_cutoff, bond_cutoff = graph_cutoffs(model)
    return [atoms_to_graph(s.atoms, atom_cutoff, bond_cutoff, label=StructureLabel(s.atoms, i))
            for i, s in enumerate(structures)]


def _stage_two_text(config) -> str:
    """"energy 1.0 -> 10.0, ..." for the weights (and the conservative_every) that
    ``loss.stage_two`` changes."""
    loss, stage = config.loss, config.loss.stage_two
    changes = [f"{t} {getattr(loss, t)} -> {getattr(stage, t)}"
               for t in TARGETS if getattr(stage, t) is not None]
    if stage.conservative_every is not None:
        changes.append(f"conservative_every {config.train.conservative_every} -> "
                       f"{stage.conservative_every}")
    fixed = [f"{t} {getattr(loss, 'gradient_' + t)}" for t in ("forces", "stress")
             if getattr(loss, "gradient_" + t) is not None and getattr(stage, t) is not None]
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
            timed_atoms += sum(len(loader.structures[i].atoms) for g in groups for i in g)
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


def train(config: ExperimentConfig, resume: bool = False) -> dict:
    """Train, evaluate and checkpoint as ``config`` says; returns the final metrics.

    With ``resume``, continues from the latest checkpoint in ``config.train.run_dir`` exactly
    (same batches, same RNG, same optimizer state).
    """
    run_dir = Path(config.train.run_dir)
    # checks before the data, which can take long to make
    check_emulation_covers(build_model(config.model), config.train.matmul_precision)
    if config.model.init_from:
        from equijax.training.trained import check_init_from

        check_init_from(config.model)
    run_dir.mkdir(parents=True, exist_ok=True)
    structures = load_structures(config)
    from equijax.data import per_element_linear_baseline, split_by_group

    train_set, val_set, test_set = split_by_group(structures, tuple(config.data.fractions),
                                                  seed=config.data.seed)
    mesh = make_mesh(config.train.devices)
    n_dev = mesh.size
    batch = config.data.batch_size
    loaders = {name: Loader(_graphs(split, config.model), split, batch if name == "train"
                            else min(batch, len(split)), n_dev, config.train.seed,
                            shuffle=name == "train", prefetch=config.train.prefetch)
               for name, split in (("train", train_set), ("val", val_set), ("test", test_set))}
    train_loader = loaders["train"]
    total_steps = config.train.max_steps or config.train.epochs * train_loader.steps_per_epoch
    stage_two_from = stage_two_start_step(config.loss.stage_two, total_steps)

    module = build_model(config.model)
    example = jax.tree_util.tree_map(lambda x: x[0], train_loader.batch(0, 0)[0])
    params = initial_params(config, module, example, train_set)
    optimizer = make_optimizer(config.optim, total_steps, frozen_collections(config, params))
    state = init_state(params, optimizer, config.train.seed)
    checkpoints = Checkpoints(run_dir, keep=config.train.keep_checkpoints)
    primary = jax.process_index() == 0  # one writer of the run's files in a multi-host run
    log = MetricsLog(run_dir, enabled=primary)
    start_epoch = start_step = 0
    if resume:
        restored = checkpoints.restore_latest(state, to_dict(config)["model"])
        if restored is not None:
            state, meta = restored
            start_epoch, start_step = meta["epoch"], meta["next_step"]
            log.truncate_after(int(state.step))
    if primary and (not resume or int(state.step) == 0) and log.path.exists():
        log.path.unlink()  # a fresh start (also a resume that found no checkpoint)
    if primary:  # after the check
        (run_dir / "config.json").write_text(json.dumps(to_dict(config), indent=1))
    state = replicate(mesh, state)
    precision = config.train.matmul_precision
    train_step = with_matmul_precision(
        make_train_step(module, optimizer, config.loss, mesh, config.optim.ema_decay,
                        config.train.conservative_every, stage_two_from), precision)
    eval_step = with_matmul_precision(make_eval_step(module, config.loss, mesh), precision)
    baseline = {k: v for k, v in per_element_linear_baseline(train_set, val_set).items()
                if k != "coefficients"}

    def meta(epoch, next_step):
        return {"config": to_dict(config), "epoch": epoch, "next_step": next_step}

    bar = tqdm(total=total_steps, initial=int(state.step), disable=not config.train.progress,
               desc="train", unit="step")
    t_start, n_seen = time.perf_counter(), 0
    val = {}
    for epoch in range(start_epoch, config.train.epochs):
        for step, (graph, targets, groups) in train_loader.epoch(epoch, start_step):
            state, m = train_step(state, shard_batch(mesh, graph), shard_batch(mesh, targets))
            global_step = int(state.step)
            loss = float(m["loss"])
            if not np.isfinite(loss):
                ids = [getattr(train_set[i], "id", str(i)) for g in groups for i in g]
                raise TrainingDiverged(
                    f"loss is {loss} at step {global_step} (epoch {epoch}, batch {step}); structures: "
                    f"{ids[:20]}{' ...' if len(ids) > 20 else ''}. The last good checkpoint "
                    f"(step {checkpoints.latest_step()}) in {run_dir} is intact.")
            if stage_two_from is not None and global_step == stage_two_from + 1:
                bar.write(f"step {stage_two_from}: stage two of the loss begins "
                          f"({_stage_two_text(config)})")
            n_seen += batch
            rate = n_seen / (time.perf_counter() - t_start)
            log.write({"split": "train", "step": global_step, "epoch": epoch,
                       **{k: v for k, v in jax.device_get(m).items() if not k.startswith("count_")}})
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", struct_per_s=f"{rate:.1f}")
            done = global_step >= total_steps
            last_of_epoch = step == train_loader.steps_per_epoch - 1
            if global_step % config.train.checkpoint_every_steps == 0 or done:
                next_epoch, next_step = (epoch + 1, 0) if last_of_epoch else (epoch, step + 1)
                checkpoints.save(global_step, state, meta(next_epoch, next_step))
            if done:
                break
        start_step = 0
        if (epoch + 1) % config.train.eval_every_epochs == 0 or int(state.step) >= total_steps:
            val = _evaluate(eval_step, mesh, state.ema_params, loaders["val"])
            log.write({"split": "val", "step": int(state.step), "epoch": epoch, **val})
            checkpoints.save_best(int(state.step), state, meta(epoch + 1, 0), val["loss"])
            bar.write(f"epoch {epoch}: val MAE energy {val['mae_energy']:.4f} eV/atom, "
                      f"forces {val['mae_forces']:.4f} eV/Å")
        if int(state.step) >= total_steps:
            break
    bar.close()
    test = _evaluate(eval_step, mesh, state.ema_params, loaders["test"])
    log.write({"split": "test", "step": int(state.step), **test})
    if primary:
        log.write_csv()
    elapsed = time.perf_counter() - t_start
    result = {"steps": int(state.step), "val": val, "test": test, "baseline_val": baseline,
              "structures_per_s": n_seen / elapsed if n_seen else 0.0,
              "data_wait_fraction": train_loader.wait_seconds / elapsed if n_seen else 0.0,
              "devices": n_dev, "num_params": count_params(params), "run_dir": str(run_dir)}
    if primary:
        (run_dir / "result.json").write_text(json.dumps(result, indent=1, default=float))
    try:
        if primary:
            log.plot(baseline={"mae_energy": baseline["energy_mae_per_atom"],
                               "mae_forces": baseline["force_mae_zero"]})
    except (KeyError, ValueError):
        pass
    checkpoints.close()
    return result
