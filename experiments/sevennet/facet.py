"""Facet's SevenNet experiment on equijax's SevenNet-0: trimmed radials, B-spline radials, the
S2MLP self-connection and a Gaunt tensor product, each before and after an equal-steps
distillation fine-tune on SevenNet-0-labelled data (made by equijax's own SevenNet-0, no torch).

Run from the repository root:  .venv/bin/python experiments/sevennet/facet.py [--steps 50]
Writes experiments/sevennet/facet.json and prints the table of docs/experiments.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

from equijax.bench.common import load_benchmark_structures
from equijax.graphs import BucketPolicy, atoms_to_graph, pad_batch
from equijax.models import registry
from equijax.models.nequip import NequIP
from equijax.models.nequip.trim import count, pair_distances, radial_basis, trim_radial
from equijax.models.saved import save_model
from equijax.nn.fully_connected import fully_connected
from equijax.nn.normalized_activation import normalized_activation
from equijax.nn.spline_radial import bspline_basis
from equijax.potential import Potential
from equijax.training.teacher import generate_teacher_dataset
from equijax.training.trained import load_trained

HERE = Path(__file__).parent
POLICY = BucketPolicy(growth=2.0, multiple=256, minimum=256)


def spline_variant(module, params, structures):
    """B-spline radials, each layer's coefficients least-squares fitted to its MLP."""
    config = module.config
    r = pair_distances(structures, config.cutoff)
    bessel = radial_basis(config, params, r)
    spline = np.asarray(bspline_basis(jax.numpy.asarray(r), config.num_radial, config.cutoff))
    act = normalized_activation(config.act_radial, config.activation_scales)
    new = jax.tree_util.tree_map(np.asarray, params)
    r2 = []
    for t in range(config.num_layers):
        nn_params = params["params"][f"interaction_{t}"]["radial"]["weight_nn"]
        weights = [np.asarray(nn_params[f"layer{k}"], np.float64) for k in range(len(nn_params))]
        target = np.asarray(fully_connected(jax.numpy.asarray(bessel), weights, act))
        fit, *_ = np.linalg.lstsq(spline, target, rcond=None)
        res = target - spline @ fit
        r2.append(1 - float((res**2).sum() / ((target - target.mean(0)) ** 2).sum()))
        new["params"][f"interaction_{t}"]["radial"] = {"spline": {"coefficients": fit.astype(np.float32)}}
    del new["params"]["bessel_frequencies"]
    return NequIP(dataclasses.replace(config, radial="spline")), new, {"r2": r2}


def fresh_with(module, params, **changes):
    """A variant's own init, with every SevenNet-0 param of the same path and shape copied in;
    the S2MLP branch's output map starts at zero (the variant starts as SevenNet-0)."""
    variant = NequIP(dataclasses.replace(module.config, **changes))
    graph = atoms_to_graph(load_benchmark_structures(1)[0], 5.0, 3.0)
    fresh = jax.tree_util.tree_map(np.asarray, variant.init(jax.random.key(0), graph))
    old = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(params)}
    copied = 0

    def pick(path, leaf):
        nonlocal copied
        key = jax.tree_util.keystr(path)
        alt = key.replace("['self_connection']['linear']", "['self_connection']")
        for k in (key, alt):
            if k in old and np.shape(old[k]) == np.shape(leaf):
                copied += 1
                return np.asarray(old[k])
        if "from_grid" in key:
            return np.zeros_like(leaf)
        return leaf

    new = jax.tree_util.tree_map_with_path(pick, fresh)
    return variant, new, {"copied_leaves": copied}


def deviation(module, params, reference_out, structures) -> dict:
    out = Potential(module, params, policy=POLICY).predict(structures, batch_size=8)
    de = np.mean([abs(a["energy_per_atom"] - b["energy_per_atom"]) for a, b in zip(out, reference_out)])
    df = np.mean([np.abs(a["forces"] - b["forces"]).mean() for a, b in zip(out, reference_out)])
    ds = np.mean([np.abs(a["stress"] - b["stress"]).mean() for a, b in zip(out, reference_out)])
    return {
        "energy_mev_per_atom": float(1e3 * de),
        "forces_ev_per_a": float(df),
        "stress_gpa": float(ds),
    }


def infer_seconds(module, params, structures) -> float:
    potential = Potential(module, params, policy=BucketPolicy(fixed_graphs=8))
    graph, _ = pad_batch([atoms_to_graph(a, 5.0, 3.0) for a in structures[:8]], potential.policy)
    graph = jax.device_put(graph)
    jax.block_until_ready(potential._predict(potential.params, graph, True))
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        jax.block_until_ready(potential._predict(potential.params, graph, True))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def finetune(folder: Path, run_dir: Path, steps: int, n_structures: int) -> tuple:
    cmd = [
        sys.executable, "-m", "equijax.cli", "train", "--config", "sevennet_distill",
        f"model.pretrained={folder}", f"data.n_structures={n_structures}",
        "data.batch_size=8", "train.epochs=100", f"train.max_steps={steps}",
        "train.progress=false", f"train.run_dir={run_dir}", "train.checkpoint_every_steps=1000",
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return load_trained(run_dir)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--n-structures", type=int, default=400)
    parser.add_argument("--work", default="runs/facet_sevennet")
    args = parser.parse_args()
    work = Path(args.work)
    module, params = registry.load_pretrained("sevennet-0")
    teacher = generate_teacher_dataset(args.n_structures, version="sevennet-0")
    # held out: the last 32 teacher structures (the fine-tune's val/test groups hold them)
    held = [s.atoms for s in teacher[-32:]]
    fit_set = [s.atoms for s in teacher[:-32]]
    reference = Potential(module, params, policy=POLICY).predict(held, batch_size=8)
    variants = {"original": (module, params, {})}
    m, p, rep = trim_radial(module, params, fit_set)
    variants["facet trimmed radial"] = (m, p, rep)
    m, p, rep = trim_radial(module, params, fit_set, collapse_readout=True)
    variants["trimmed radial + collapsed readout"] = (m, p, rep)
    variants["B-spline radial (fitted)"] = spline_variant(module, params, fit_set)
    variants["S2MLP self-connection"] = fresh_with(module, params, self_connection="s2mlp")
    variants["gaunt_grid tensor product"] = fresh_with(module, params, tp="gaunt_grid")
    out = HERE / "facet.json"
    rows = json.loads(out.read_text())["rows"] if out.exists() else []  # a re-run keeps them
    done = {row["variant"] for row in rows}
    for name, (m, p, rep) in variants.items():
        if name in done:
            continue
        slug = name.split(" ")[0].replace("+", "").lower() + str(len(rows))
        folder = work / f"model_{slug}"
        save_model(folder, "nequip", m.config, p, info={"variant": name})
        row = {"variant": name, "params": count(p), "report": rep}
        row["infer_s"] = infer_seconds(m, p, held)
        row["before"] = deviation(m, p, reference, held)
        print(name, row["before"], flush=True)
        run_dir = work / f"run_{slug}"
        if not (run_dir / "best").exists():
            tuned = finetune(folder, run_dir, args.steps, args.n_structures)
        else:  # a re-run reuses finished fine-tunes
            tuned = load_trained(run_dir)
        row["after"] = deviation(*tuned, reference, held)
        print(name, "after", row["after"], flush=True)
        rows.append(row)
        (HERE / "facet.json").write_text(json.dumps({"steps": args.steps, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
