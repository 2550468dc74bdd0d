"""Price of Freedom, step time: one MACE training step (Adam on an energy + forces + stress loss;
forces by autodiff, so the step differentiates twice) and one energy + forces + stress evaluation
for each contraction / tensor-product choice, on the same batch of teacher crystals, in one
process. The sweep's structures/s include compiles and evaluation; this is the steady step.

Run:  .venv/bin/python experiments/mace/pof_step_time.py [--config mace_small] [--steps 5]
Writes experiments/mace/pof_step_time.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np

from equijax.bench.common import machine_info
from equijax.bench.sevennet import _equijax_train_step
from equijax.graphs import BucketPolicy, atoms_to_graph, pad_batch
from equijax.models.mace import MACE
from equijax.models.mace.report import num_weights
from equijax.potential import predict_padded
from equijax.training.config import load_config
from equijax.training.teacher import teacher_structures

VARIANTS = [("cg", "cg"), ("gaunt_grid", "cg"), ("cg", "gaunt_grid"), ("gaunt_grid", "gaunt_grid")]


def median_time(fn, steps: int) -> float:
    """Median wall time of ``fn()`` over ``steps`` calls after one warm-up (the compile)."""
    fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/mace/price_of_freedom.yaml")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).with_name("pof_step_time.json")))
    args = parser.parse_args()
    base = load_config(args.config, []).model.config
    atoms = [a for a, _ in teacher_structures(args.batch_size, seed=1)]
    graphs = [atoms_to_graph(a, base.r_max, 3.0) for a in atoms]
    graph = jax.device_put(pad_batch(graphs, BucketPolicy(fixed_graphs=args.batch_size))[0])
    rows = []
    for contraction, tp in VARIANTS:
        config = dataclasses.replace(base, contraction=contraction, tp=tp)
        module = MACE(config)
        params = jax.jit(module.init)(jax.random.key(0), graph)
        efs = jax.jit(lambda p, g, m=module: predict_padded(m, p, g))
        step, optimizer = _equijax_train_step(module, graph)
        state = {"params": params, "opt": optimizer.init(params)}

        def train_step(step=step, state=state):
            state["params"], state["opt"], value = step(state["params"], state["opt"], graph)
            jax.block_until_ready(value)

        t0 = time.perf_counter()
        train_step()
        compile_s = time.perf_counter() - t0
        row = {
            "contraction": contraction,
            "tp": tp,
            "params": num_weights(config),
            "train_step_s": median_time(train_step, args.steps),
            "train_compile_s": compile_s,
            "efs_s": median_time(
                lambda f=efs, p=params: jax.block_until_ready(f(p, graph)), args.steps
            ),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    ref = rows[0]
    for row in rows:
        row["train_speedup_vs_cg"] = ref["train_step_s"] / row["train_step_s"]
        row["efs_speedup_vs_cg"] = ref["efs_s"] / row["efs_s"]
    result = {
        "machine": machine_info(),
        "batch": f"{args.batch_size} teacher crystals ({sum(len(a) for a in atoms)} atoms)",
        "config": dataclasses.asdict(base),
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
