"""`equijax bench model --config ... [--tps cg,gaunt_grid,...]`: inference and training throughput
of an equivariant potential (equivariant, nequip or mace) from a training config, with each
tensor-product kind, against a baseline in the same run on the same batches: the same model built
on e3nn-jax's Clebsch-Gordan ``tensor_product`` (equivariant) or with ``tp=cg`` (nequip, mace).

Inference is `predict_padded` under jit (energy, forces and stress: one gradient for
conservative models, one forward pass for direct heads); training is the data-parallel train step
of `equijax train` on one device. For the equivariant model ``tp=cg`` is the baseline's function,
and the run checks that their energies agree with the same params.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from equijax.bench.common import Table, machine_info, ratio, write_json
from equijax.graphs import atoms_to_graph, padding_masks
from equijax.nn.tp import KINDS
from equijax.potential import predict_padded
from equijax.training.config import load_config
from equijax.training.data_source import graph_cutoffs, load_structures
from equijax.training.loader import Loader
from equijax.training.model_setup import build_model, count_params
from equijax.training.step import (
    init_state,
    make_mesh,
    make_optimizer,
    make_train_step,
    replicate,
    shard_batch,
)


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _measure(config, tp: str, loader, batches, repeats: int, params=None) -> dict:
    """Compile and time inference and one train step of the model of ``config`` with ``tp``."""
    model = dataclasses.replace(
        config.model, config=dataclasses.replace(config.model.config, tp=tp)
    )
    module = build_model(model)
    graphs = [jax.tree_util.tree_map(lambda x: x[0], g) for g, _, _ in batches]
    params = params if params is not None else module.init(jax.random.key(0), graphs[0])
    predict = jax.jit(lambda p, g: predict_padded(module, p, g))
    t0 = time.perf_counter()
    jax.block_until_ready(predict(params, graphs[0]))
    infer_compile = time.perf_counter() - t0
    real_atoms = int(sum(np.asarray(padding_masks(g)["node"]).sum() for g in graphs))
    infer_s = sum(_median_seconds(lambda g=g: predict(params, g), repeats) for g in graphs)
    energies = np.asarray(predict(params, graphs[0])["energy"])

    mesh = make_mesh(1)
    optimizer = make_optimizer(config.optim, 1000)
    state = replicate(mesh, init_state(params, optimizer, 0))
    step = make_train_step(module, optimizer, config.loss, mesh, ema_decay=0.0)
    placed = [(shard_batch(mesh, g), shard_batch(mesh, t)) for g, t, _ in batches]
    t0 = time.perf_counter()
    state, metrics = step(state, *placed[0])
    jax.block_until_ready(metrics["loss"])
    train_compile = time.perf_counter() - t0
    times = []
    for k in range(repeats * len(placed)):
        t0 = time.perf_counter()
        state, metrics = step(state, *placed[k % len(placed)])
        jax.block_until_ready(metrics["loss"])
        times.append(time.perf_counter() - t0)
    batch = loader.batch_size
    return {
        "tp": tp,
        "num_params": count_params(params),
        "params": params,
        "infer_compile_s": infer_compile,
        "train_compile_s": train_compile,
        "infer_atom_steps_per_s": real_atoms / infer_s,
        "train_ms_per_step": 1e3 * float(np.median(times)),
        "train_structures_per_s": batch / float(np.median(times)),
        "energies": energies,
    }


def run(
    config_name: str,
    overrides: list[str] = (),
    batch_size: int | None = None,
    limit: int = 32,
    repeats: int = 5,
    out: str | None = "results/bench_model.json",
    tps: list[str] | None = None,
) -> dict:
    """Benchmark the model of ``config_name`` (+ ``overrides``) with each tensor-product kind of
    ``tps`` (default: the config's) against its baseline: the e3nn-jax CG twin for
    ``model.name=equivariant``, the model with ``tp=cg`` for nequip and mace. Prints a table,
    writes JSON, returns the results."""
    config = load_config(config_name, list(overrides))
    if not hasattr(config.model.config, "tp"):
        raise ValueError(
            f"bench model times models with a tensor-product kind (equivariant, nequip, mace), "
            f"got {config.model.name!r} (CHGNet has `equijax bench chgnet-train`)"
        )
    tps = list(tps or [config.model.config.tp])
    unknown = [k for k in tps if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown tensor-product kind(s) {unknown}; expected some of {KINDS}")
    baseline_tp = "e3nn" if config.model.name == "equivariant" else "cg"
    config.train.progress = False
    config.data.n_structures = min(config.data.n_structures or limit, limit)
    batch = batch_size or config.data.batch_size
    structures = load_structures(config)
    cutoff, bond_cutoff = graph_cutoffs(config.model)
    graphs = [atoms_to_graph(s.atoms, cutoff, bond_cutoff) for s in structures]
    loader = Loader(graphs, structures, batch, 1, seed=0, shuffle=False, prefetch=0)
    batches = [loader.batch(0, k) for k in range(loader.steps_per_epoch)]
    print(
        f"bench model: {config.name} ({config.model.name}), tp={','.join(tps)}, "
        f"{len(structures)} structures, batch {batch}, {len(batches)} batches, {repeats} repeats",
        flush=True,
    )
    measured = {}
    for tp in tps:
        measured[tp] = _measure(config, tp, loader, batches, repeats)
        print(f"  tp={tp} done", flush=True)
    base = measured.get(baseline_tp)
    if base is None:
        cg_params = measured["cg"]["params"] if "cg" in measured else None
        base = _measure(config, baseline_tp, loader, batches, repeats, params=cg_params)
        print(f"  baseline (tp={baseline_tp}) done", flush=True)
    result = {
        "benchmark": "model",
        "machine": machine_info(),
        "config": config.name,
        "model": config.model.to_dict(),
        "batch_size": batch,
        "n_structures": len(structures),
        "repeats": repeats,
        "baseline_tp": baseline_tp,
        "runs": {tp: _public(r) for tp, r in measured.items()},
        "baseline": _public(base),
    }
    if len(tps) == 1:  # the single-kind layout earlier JSONs have
        result["equijax"], result["e3nn_baseline"] = result["runs"][tps[0]], result["baseline"]
    if "cg" in measured and baseline_tp == "e3nn":
        diff = np.abs(measured["cg"]["energies"] - base["energies"]).max()
        result["max_energy_difference_eV"] = float(diff)
    table = Table(
        f"equijax bench model ({config.name}, {result['machine']['summary']})",
        [
            "model",
            "params",
            "infer compile s",
            "atom-steps/s",
            "train compile s",
            "train ms/step",
            "structures/s",
            "speedup (infer / train)",
        ],
    )
    rows = [(f"equijax tp={tp}", r) for tp, r in measured.items() if tp != baseline_tp]
    name = "e3nn-jax tensor_product" if baseline_tp == "e3nn" else "equijax tp=cg (baseline)"
    for label, r in rows + [(name, base)]:
        table.add(
            label,
            r["num_params"],
            f"{r['infer_compile_s']:.1f}",
            f"{r['infer_atom_steps_per_s']:.0f}",
            f"{r['train_compile_s']:.1f}",
            f"{r['train_ms_per_step']:.1f}",
            f"{r['train_structures_per_s']:.1f}",
            f"{ratio(r['infer_atom_steps_per_s'], base['infer_atom_steps_per_s'])} / "
            f"{ratio(r['train_structures_per_s'], base['train_structures_per_s'])}",
        )
    table.print()
    if "max_energy_difference_eV" in result:
        print(
            "tp=cg is the baseline's function: energies agree to "
            f"{result['max_energy_difference_eV']:.1e} eV"
        )
    write_json(result, out)
    return result


def _public(r: dict) -> dict:
    return {k: v for k, v in r.items() if k not in ("params", "energies")}
