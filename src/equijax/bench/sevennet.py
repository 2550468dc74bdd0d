"""`equijax bench sevennet`: a pretrained SevenNet in equijax against sevenn itself, on the same
structures in the same run:

- ``md``: one structure's energy, forces and stress per call through the ASE calculators
  (`EquijaxCalculator` vs ``SevenNetCalculator``), atoms moved a little between calls, as in MD;
- ``infer``: batched energy, forces and stress of the benchmark structures (equijax's compiled,
  padded batch vs sevenn's torch_geometric batch);
- ``train``: one optimizer step of an energy + forces + stress loss on such a batch (Adam in both;
  forces by autodiff, so the step differentiates twice).

sevenn runs with as many torch threads as the machine has cores (XLA uses them all too). Each
row gives both times and their ratio; CPU rows also give XLA's FLOP count of the equijax
program and the achieved fraction of this machine's measured float32 matmul rate.
"""

from __future__ import annotations

import os
import time

import ase.build
import jax
import jax.numpy as jnp
import numpy as np
import optax

from equijax.bench.common import (
    Table,
    load_benchmark_structures,
    machine_info,
    md_cell,
    write_json,
)
from equijax.bench.tp import machine_rates
from equijax.calculators import EquijaxCalculator
from equijax.graphs import BucketPolicy, atoms_to_graph, pad_batch, padding_masks
from equijax.models import registry
from equijax.potential import Potential, predict_padded

SEVENN_NAMES = {"sevennet-0": "7net-0", "sevennet-l3i5": "7net-l3i5"}


def _median(fn, steps: int) -> float:
    fn()  # warm-up (compiles, caches)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _flops(jitted, *args) -> float | None:
    try:
        cost = jitted.lower(*args).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        return float(cost.get("flops", 0.0)) or None
    except Exception:  # noqa: BLE001 - cost analysis is optional per backend
        return None


def _calculator_seconds(calc, atoms: ase.Atoms, steps: int) -> float:
    atoms = atoms.copy()
    atoms.calc = calc
    rng = np.random.default_rng(0)

    def call():
        atoms.positions += rng.normal(scale=1e-3, size=atoms.positions.shape)
        atoms.get_forces()
        atoms.get_stress()

    return _median(call, steps)


def _sevenn_batch(structures, cutoff: float):
    from sevenn.atom_graph_data import AtomGraphData
    from sevenn.train.dataload import unlabeled_atoms_to_graph
    from torch_geometric.data import Batch

    data = [AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(a, cutoff)) for a in structures]
    return Batch.from_data_list(data)


def _sevenn_model(name: str, train: bool):
    from sevenn.util import model_from_checkpoint

    model, _ = model_from_checkpoint(SEVENN_NAMES[name])
    model.set_is_batch_data(True)
    return model.train() if train else model.eval()


def _sevenn_infer(name: str, batch, steps: int) -> tuple[float, np.ndarray]:
    """Median seconds of a batched e+f+s call, and the energies (G,) eV."""
    import sevenn._keys as KEY

    model = _sevenn_model(name, train=False)
    energies = model(batch.clone())[KEY.PRED_TOTAL_ENERGY].detach().numpy()
    return _median(lambda: model(batch.clone()), steps), energies


def _sevenn_train_seconds(name: str, batch, steps: int) -> float:
    import sevenn._keys as KEY
    import torch

    model = _sevenn_model(name, train=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        out = model(batch.clone())
        n_atoms = out[KEY.NUM_ATOMS].to(out[KEY.PRED_TOTAL_ENERGY].dtype)
        loss = (
            ((out[KEY.PRED_TOTAL_ENERGY] / n_atoms) ** 2).mean()
            + (out[KEY.PRED_FORCE] ** 2).mean()
            + 0.01 * (out[KEY.PRED_STRESS] ** 2).mean()
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return _median(step, steps)


def _equijax_train_step(module, graph):
    """A jitted Adam step on the same loss as the sevenn step (targets zero)."""
    optimizer = optax.adam(1e-4)
    masks = padding_masks(graph)

    def loss(params, graph):
        out = predict_padded(module, params, graph)
        g, n = masks["graph"], masks["node"]
        e = jnp.where(g, out["energy_per_atom"], 0.0)
        f = jnp.where(n[:, None], out["forces"], 0.0)
        s = jnp.where(g[:, None, None], out["stress"], 0.0)
        return (
            jnp.sum(e**2) / jnp.sum(g)
            + jnp.sum(f**2) / (3 * jnp.sum(n))
            + 0.01 * jnp.sum(s**2) / (9 * jnp.sum(g))
        )

    @jax.jit
    def step(params, opt_state, graph):
        value, grads = jax.value_and_grad(loss)(params, graph)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step, optimizer


def run(
    name: str = "sevennet-0",
    batch_size: int = 8,
    md_atoms: tuple[int, ...] = (32, 108),
    steps: int = 3,
    reference: bool = True,
    modes: tuple[str, ...] = ("md", "infer", "train"),
    out: str | None = "results/bench_sevennet.json",
) -> dict:
    """Time the modes, print the table, write JSON (see the module docstring)."""
    if name not in SEVENN_NAMES:
        raise ValueError(f"unknown SevenNet model {name!r}; choose from {sorted(SEVENN_NAMES)}")
    info = machine_info()
    rates = machine_rates(big=jax.default_backend() != "cpu")
    print(f"machine: {info['summary']}; float32 matmul {rates['matmul_tflop_s'] * 1e3:.0f} GFLOP/s")
    module, params = registry.load_pretrained(name)
    cutoff = module.config.cutoff
    structures = load_benchmark_structures(batch_size)
    policy = BucketPolicy(fixed_graphs=batch_size)
    graph, _ = pad_batch([atoms_to_graph(a, cutoff, min(3.0, cutoff)) for a in structures], policy)
    graph = jax.device_put(graph)
    what = f"{batch_size} benchmark structures ({sum(len(a) for a in structures)} atoms)"
    rows = []
    # every equijax row first, then sevenn's: torch's idle OpenMP threads keep spinning for a
    # while after each call and would slow whatever runs next on the same cores
    if "md" in modes:
        calc = EquijaxCalculator(module, params)
        for n in md_atoms:
            atoms = md_cell(n)
            row = {"mode": "md", "what": f"Cu{len(atoms)}, calculator e+f+s per call", "atoms": n}
            row["equijax_s"] = _calculator_seconds(calc, atoms, steps)
            rows.append(row)
            print(_progress(row))
    if "infer" in modes:
        potential = Potential(module, params, policy=policy)
        predict = potential._predict
        row = {"mode": "infer", "what": what + ", e+f+s"}
        row["equijax_s"] = _median(
            lambda: jax.block_until_ready(predict(potential.params, graph, True)), steps
        )
        row["equijax_gflop"] = (_flops(predict, potential.params, graph, True) or 0) / 1e9
        energies = np.asarray(predict(potential.params, graph, True)["energy"])
        row["energies"] = energies[: len(structures)]
        row["n_atoms"] = [len(a) for a in structures]
        rows.append(row)
        print(_progress(row))
    if "train" in modes:
        step, optimizer = _equijax_train_step(module, graph)
        state = {"params": params, "opt": optimizer.init(params)}

        def train_step():
            state["params"], state["opt"], value = step(state["params"], state["opt"], graph)
            jax.block_until_ready(value)

        row = {"mode": "train", "what": what + ", Adam step on e+f+s loss"}
        row["equijax_s"] = _median(train_step, steps)
        row["equijax_gflop"] = (_flops(step, params, state["opt"], graph) or 0) / 1e9
        rows.append(row)
        print(_progress(row))
    if reference:
        import torch
        from sevenn.calculator import SevenNetCalculator

        torch.set_num_threads(os.cpu_count() or 1)  # every core, as XLA (the CLI pins 1)
        print(f"sevenn: torch {torch.__version__} on {torch.get_num_threads()} threads")
        batch = _sevenn_batch(structures, cutoff)
        for row in rows:
            if row["mode"] == "md":
                ref = SevenNetCalculator(SEVENN_NAMES[name], device="cpu")
                row["reference_s"] = _calculator_seconds(ref, md_cell(row["atoms"]), steps)
            elif row["mode"] == "infer":
                row["reference_s"], energies = _sevenn_infer(name, batch, steps)
                # the same function: the energies must agree (float32 rounding)
                diff = np.abs(energies - row.pop("energies")) / np.array(row.pop("n_atoms"))
                row["max_energy_diff_ev_per_atom"] = float(diff.max())
            else:
                row["reference_s"] = _sevenn_train_seconds(name, batch, steps)
            print(_progress(row))
    for row in rows:
        row.pop("energies", None)
        row.pop("n_atoms", None)
        if "max_energy_diff_ev_per_atom" in row:
            print(
                f"  energies agree with sevenn to {row['max_energy_diff_ev_per_atom']:.1e} eV/atom"
            )
        if row.get("reference_s"):
            row["speedup"] = row["reference_s"] / row["equijax_s"]
        if row.get("equijax_gflop"):
            achieved = row["equijax_gflop"] / row["equijax_s"]
            row["fraction_of_matmul"] = achieved / (rates["matmul_tflop_s"] * 1e3)
    table = Table(
        f"{name}: equijax vs sevenn (median of {steps})",
        ["mode", "what", "equijax s", "sevenn s", "speed-up", "GFLOP", "of matmul peak"],
    )
    for r in rows:
        table.add(
            *[
                r["mode"],
                r["what"],
                f"{r['equijax_s']:.3f}",
                f"{r['reference_s']:.3f}" if r.get("reference_s") else "-",
                f"{r['speedup']:.2f}x" if r.get("speedup") else "-",
                f"{r['equijax_gflop']:.1f}" if r.get("equijax_gflop") else "-",
                f"{100 * r['fraction_of_matmul']:.1f}%" if r.get("fraction_of_matmul") else "-",
            ]
        )
    print(table.render())
    results = {"model": name, "machine": info, "rates": rates, "rows": rows}
    write_json(results, out)
    return results


def _progress(row: dict) -> str:
    ref = f", sevenn {row['reference_s']:.3f} s" if row.get("reference_s") else ""
    return f"  {row['mode']}: {row['what']}: equijax {row['equijax_s']:.3f} s{ref}"
