"""`equijax bench chgnet-train`: CHGNet 0.3.0 training steps (efsm, Huber δ=0.1, weights
1/1/0.1/0.1, Adam) in equijax against the PyTorch chgnet, on the same structures and teacher labels
(the pretrained model's own predictions) in the same run. equijax runs with conservative forces
(a second derivative in every step, as the reference) and/or direct force/stress heads on the
pretrained trunk (no second derivatives, FastCHGNet-style)."""

from __future__ import annotations

import dataclasses
import time
from typing import NamedTuple

import jax
import numpy as np

from equijax.bench import chgnet_train_reference
from equijax.bench.breakdown import stage_breakdown
from equijax.bench.common import (
    Table,
    format_mb,
    load_benchmark_structures,
    machine_info,
    ratio,
    share_gpu_with_torch,
    write_json,
)
from equijax.bench.hlo import hlo_summary
from equijax.bench.memory import PeakRSS, xla_memory
from equijax.data import LabeledStructure
from equijax.graphs import atoms_to_graph
from equijax.models.chgnet import CHGNet, from_pretrained
from equijax.nn.precision import (
    check_precision,
    emulated,
    matmul_precision,
    with_matmul_precision,
)
from equijax.potential import Potential
from equijax.training.config import LossConfig, OptimConfig
from equijax.training.loader import Loader
from equijax.training.step import (
    init_state,
    make_mesh,
    make_optimizer,
    make_train_step,
    replicate,
    shard_batch,
)


def _teacher_labels(structures, batch_size: int) -> list[LabeledStructure]:
    predictions = Potential.from_pretrained("0.3.0").predict(structures, batch_size=batch_size)
    return [
        LabeledStructure(
            id=str(i),
            atoms=a,
            energy=p["energy"],
            forces=p["forces"],
            stress=p["stress"],
            magmoms=p["magmoms"],
        )
        for i, (a, p) in enumerate(zip(structures, predictions))
    ]


class Run(NamedTuple):
    """One equijax configuration the benchmark times."""

    forces: str  # one of FORCES
    precision: str = "default"  # equijax.nn.precision.PRECISIONS
    conservative_every: int = 0  # > 0: direct heads with a conservative step every k steps
    remat: bool = False  # CHGNetConfig.remat: rematerialise each block in the backward pass
    factorized: bool = True  # CHGNetConfig.factorized_messages; False: concatenate, then multiply
    fused: bool = True  # CHGNetConfig.fused_gates; False: core and gate first layers apart


def _model(forces: str, example, remat: bool = False, factorized: bool = True, fused: bool = True):
    """The pretrained CHGNet 0.3.0; with direct forces, fresh direct heads on its trunk
    (``"direct-angle"``: with the three-body stress term, ``direct_angle_stress``;
    ``"direct-physical"``: with `PHYSICAL_HEADS`, three-body forces, a pair energy and the
    stress as their virial); ``remat``:
    each convolution block rematerialised in the backward pass (same values, less memory);
    ``factorized``: ``factorized_messages`` (same values; False is the plain concatenation);
    ``fused``: ``fused_gates`` (same values; False runs core and gate first layers apart)."""
    module, params = from_pretrained("0.3.0")
    config = dataclasses.replace(
        module.config, remat=remat, factorized_messages=factorized, fused_gates=fused
    )
    if forces != "conservative":
        config = dataclasses.replace(
            config, forces="direct", direct_angle_stress=forces == "direct-angle"
        )
        if forces == "direct-physical":
            config = dataclasses.replace(config, **PHYSICAL_HEADS)
        fresh = CHGNet(config).init(jax.random.key(0), example)
        params = {"params": {**fresh["params"], **params["params"]}}
    return CHGNet(config), params


def _equijax_rate(
    labeled, batch_size: int, steps: int, run: Run, breakdown: bool = False, memory: bool = False
) -> dict:
    """Time ``steps`` train steps of ``run`` (median; with ``conservative_every`` k, the mean over
    whole cycles of k steps, since its steps differ in kind) after compiling each batch shape.
    ``memory``: also XLA's memory plan of the step (``xla_memory``) and, on a CPU, the measured
    resident-memory growth of one more step, or of one more cycle of ``conservative_every``
    steps (``step_rss_growth_MB``, `PeakRSS`)."""
    forces, precision, conservative_every = run.forces, run.precision, run.conservative_every
    graphs = [atoms_to_graph(s.atoms) for s in labeled]
    module, params = _model(forces, graphs[0], run.remat, run.factorized, run.fused)
    mesh = make_mesh(1)
    loader = Loader(graphs, labeled, batch_size, 1, seed=0, shuffle=False, prefetch=0)
    optimizer = make_optimizer(OptimConfig(learning_rate=1e-4, warmup_steps=1, clip_norm=1e9), 1000)
    state = replicate(mesh, init_state(params, optimizer, 0))
    raw_step = make_train_step(
        module,
        optimizer,
        LossConfig(kind="huber", delta=0.1),
        mesh,
        ema_decay=0.0,
        conservative_every=conservative_every,
    )
    if conservative_every:
        steps = -(-steps // conservative_every) * conservative_every
    step = with_matmul_precision(raw_step, precision)
    batches = [loader.batch(0, k) for k in range(min(steps, loader.steps_per_epoch))]
    placed = [(shard_batch(mesh, g), shard_batch(mesh, t)) for g, t, _ in batches]
    shapes = {tuple(x.shape for x in jax.tree_util.tree_leaves(g)) for g, _ in placed}
    t0 = time.perf_counter()
    for g, t in placed:  # compile each shape (donated state: keep the returned one)
        state, m = step(state, g, t)
    jax.block_until_ready(m["loss"])
    compile_s = time.perf_counter() - t0
    out = {}
    # a conservative_every step has two kinds, so it has no single breakdown
    breakdown = breakdown and not conservative_every
    if memory or breakdown:  # one ahead-of-time compile serves the memory plan and the HLO summary
        with matmul_precision(precision):
            compiled = raw_step.lower(state, *placed[0]).compile()
    if memory:
        if jax.default_backend() == "cpu":
            with PeakRSS() as rss:  # a whole cycle, so that both kinds of step are seen
                for _ in range(max(conservative_every, 1)):
                    state, m = step(state, *placed[0])
                    jax.block_until_ready(m["loss"])
            out["step_rss_growth_MB"] = rss.growth_mb
        out["xla_memory_MB"] = xla_memory(compiled)
    times = []
    for k in range(steps):
        g, t = placed[k % len(placed)]
        t0 = time.perf_counter()
        state, m = step(state, g, t)
        jax.block_until_ready(m["loss"])
        times.append(time.perf_counter() - t0)
    stats = jax.devices()[0].memory_stats() or {}
    ms = 1e3 * float(np.mean(times) if conservative_every else np.median(times))
    out |= {
        "ms_per_step": ms,
        "timed_steps": steps,
        "structures_per_s": batch_size / (ms / 1e3),
        "compile_s": compile_s,
        "distinct_shapes": len(shapes),
        "final_loss": float(m["loss"]),
        # the device's peak over the whole process so far (JAX cannot reset it): only the
        # first run of a benchmark measures itself alone
        "peak_memory_MB": stats.get("peak_bytes_in_use", 0) / 2**20 or None,
    }
    # after the memory peak was read: these compile and run more functions
    if breakdown:
        local = jax.tree_util.tree_map(lambda x: x[0], placed[0][0])
        with matmul_precision(precision):
            out["stages"] = stage_breakdown(module, state.params, local, ms, repeats=max(steps, 3))
        out["train_step_hlo"] = hlo_summary(compiled.as_text())
    return out


# "direct-angle": direct heads with CHGNet's three-body stress term (model.direct_angle_stress);
# "direct-physical": with three-body forces, a pair energy and the stress their virial alone
FORCES = ("conservative", "direct", "direct-angle", "direct-physical")
PHYSICAL_HEADS = dict(direct_angle_forces=True, direct_pair_energy=8, direct_stress="virial_only")


def _label(run: Run) -> str:
    """Table row name of ``run``."""
    p, k = run.precision, run.conservative_every
    return (
        f"equijax, {run.forces} forces"
        + (f" + conservative every {k} (mean)" if k else "")
        + (", remat" if run.remat else "")
        + ("" if run.factorized else ", concatenated messages")
        + ("" if run.fused else ", unfused gates")
        + ("" if p == "default" else f", {p}{' (emulated)' if emulated(p) else ''}")
    )


def _breakdown_table(results: dict, runs: list[Run], batch_size: int) -> Table:
    table = Table(
        f"Where a training step's time goes (ms, batch {batch_size}); optimized HLO of the step",
        [
            "what",
            "forward",
            "forces+stress",
            "param grad+update",
            "step",
            "kernels",
            "fusions",
            "gather/scatter/dot alone",
        ],
    )
    for run in runs:
        ours = results[_key(run)]
        if "stages" not in ours:  # a conservative_every run: its steps differ in kind
            continue
        st, hlo = ours["stages"], ours["train_step_hlo"]
        alone = "/".join(str(hlo["alone"].get(op, 0)) for op in ("gather", "scatter", "dot"))
        table.add(
            _label(run)[len("equijax, ") :],
            f"{st['forward_ms']:.1f}",
            f"{st['forces_stress_ms']:.1f}",
            f"{st['param_gradient_and_update_ms']:.1f}",
            f"{st['step_ms']:.1f}",
            hlo["kernels"],
            hlo["fusions"],
            alone,
        )
    return table


def _memory_table(results: dict, runs: list[Run], batch_size: int) -> Table:
    """XLA's plan of each step, and the measured memory against the reference's: on a CPU the
    resident growth of one step for both; on a GPU the reference's peak against XLA's plan
    (JAX cannot reset its device peak, so only the first run's own peak is shown)."""
    cpu = jax.default_backend() == "cpu"
    ref = results.get("chgnet", {})
    ref_mb = ref.get("step_rss_growth_MB" if cpu else "peak_memory_MB")
    table = Table(
        f"Memory of one training step (MiB, batch {batch_size}): XLA's plan, and measured "
        + ("resident growth of one step (CPU)" if cpu else "device peak"),
        ["what", "XLA arguments", "XLA temp", "XLA total", "measured", "vs chgnet"],
    )
    for i, run in enumerate(runs):
        ours = results[_key(run)]
        plan = ours.get("xla_memory_MB") or {}
        measured = (
            ours.get("step_rss_growth_MB") if cpu else (ours["peak_memory_MB"] if i == 0 else None)
        )
        compared = measured if cpu else plan.get("total")
        table.add(
            _label(run),
            *(format_mb(plan.get(k)) for k in ("arguments", "temp", "total")),
            format_mb(measured),
            f"{compared / ref_mb:.3f}x" if compared and ref_mb else "-",
        )
    if ref.get("available"):
        table.add("chgnet (torch), conservative", "-", "-", "-", format_mb(ref_mb), "1.000x")
    return table


def _key(run: Run) -> str:
    """Result key: ``equijax`` (conservative, the anchor's setting), ``equijax_direct``, then
    ``_every<k>`` for direct heads with ``conservative_every`` k, ``_remat`` for rematerialised
    blocks, ``_concat`` for concatenated (not factorized) messages, ``_unfused`` for core and
    gate first layers apart and ``_<precision>`` for a matmul precision other than JAX's
    default."""
    return (
        "equijax"
        + ("" if run.forces == "conservative" else f"_{run.forces}")
        + (f"_every{run.conservative_every}" if run.conservative_every else "")
        + ("_remat" if run.remat else "")
        + ("" if run.factorized else "_concat")
        + ("" if run.fused else "_unfused")
        + ("" if run.precision == "default" else f"_{run.precision}")
    )


def run(
    out: str | None = "results/bench_chgnet_train.json",
    batch_size: int | None = None,
    steps: int = 5,
    limit: int | None = None,
    reference: bool = True,
    forces: tuple[str, ...] = ("conservative", "direct"),
    precisions: tuple[str, ...] = ("default",),
    breakdown: bool = False,
    conservative_every: int = 0,
    remat: bool = False,
    concat_messages: bool = False,
    unfused_gates: bool = False,
    memory: bool = False,
) -> dict:
    """Run the benchmark (batch 40 on GPU, 4 on CPU by default) for each of ``forces``
    (`FORCES`: "conservative", "direct", "direct-angle", "direct-physical") and matmul
    ``precisions`` (`equijax.nn.precision.PRECISIONS`; TF32/bf16 are emulated off GPU, so their
    CPU times are not what the format costs), print a table, write JSON.

    ``breakdown``: also time the step's stages (`stage_breakdown`) and summarise the train step's
    optimized HLO (`hlo_summary`), in a second table. ``conservative_every`` k > 0 adds direct
    heads trained with a conservative step every k steps (``train.conservative_every``; timed as
    the mean over whole cycles), for each direct kind in ``forces`` (plain "direct" if there is
    none) and each precision. ``remat``: also each of these with
    rematerialised blocks (``model.remat``). ``concat_messages``: also each of these with the
    plain concatenated messages (``factorized_messages=False``), the computation that the
    factorized default bypasses. ``unfused_gates``: also each of these with the gated MLPs'
    core and gate first layers apart (``fused_gates=False``). ``memory``: a memory table, XLA's plan of each step
    (`equijax.bench.memory.xla_memory`) and the measured memory against the reference's (on a
    CPU, one step's resident growth for both, `PeakRSS`).

    With ``reference``, JAX's GPU preallocation is turned off first (`share_gpu_with_torch`), so
    that the PyTorch step fits beside it. Each finished run is printed at once and the JSON is
    rewritten after it with ``"complete": false``, so a run stopped by a time limit keeps what it
    measured; on a GPU the reference is timed first for the same reason."""
    bad = [f for f in forces if f not in FORCES]
    if bad or not forces:
        raise ValueError(f"forces must be a non-empty subset of {FORCES}, got {forces}")
    if not precisions:
        raise ValueError("precisions must not be empty")
    for p in precisions:
        check_precision(p)
    if conservative_every < 0:
        raise ValueError(f"conservative_every must be >= 0, got {conservative_every}")
    if reference:
        share_gpu_with_torch()
    on_gpu = jax.default_backend() != "cpu"
    batch_size = batch_size or (40 if on_gpu else 4)
    structures = load_benchmark_structures(limit or max(batch_size * steps, batch_size))
    print(
        f"labelling {len(structures)} benchmark structures with the pretrained CHGNet ...",
        flush=True,
    )
    labeled = _teacher_labels(structures, batch_size)
    results = {
        "benchmark": "chgnet-train",
        "machine": machine_info(),
        "batch_size": batch_size,
        "steps": steps,
        "n_structures": len(structures),
        "precisions": list(precisions),
        "emulated_precisions": [p for p in precisions if emulated(p)],
    }
    runs = [Run(f, p) for f in forces for p in precisions]
    if conservative_every:  # each direct kind asked for (plain direct heads if none)
        direct_kinds = [f for f in forces if f != "conservative"] or ["direct"]
        runs += [Run(f, p, conservative_every) for f in direct_kinds for p in precisions]
    runs += [r._replace(remat=True) for r in runs] if remat else []
    runs += [r._replace(factorized=False) for r in runs] if concat_messages else []
    runs += [r._replace(fused=False) for r in runs] if unfused_gates else []
    # On a GPU the reference goes first, so that a run stopped by a time limit still has the
    # ratios' denominator; its peak is torch's own counter, and it hands its cache back after.
    # On a CPU it goes last: its freed heap would hide part of equijax's resident growth.
    reference_first = reference and on_gpu
    if reference_first:
        results["chgnet"] = chgnet_train_reference.timed_reference(
            labeled, batch_size, steps, memory
        )
        write_json(results | {"complete": False}, out, say=False)
    for r in runs:
        print(f"timing {_label(r)} ...", flush=True)
        ours = results[_key(r)] = _equijax_rate(labeled, batch_size, steps, r, breakdown, memory)
        print(
            f"  {ours['ms_per_step']:.0f} ms/step, {ours['structures_per_s']:.1f} structures/s, "
            f"compile {ours['compile_s']:.1f} s",
            flush=True,
        )
        write_json(results | {"complete": False}, out, say=False)
    if reference and not reference_first:
        results["chgnet"] = chgnet_train_reference.timed_reference(
            labeled, batch_size, steps, memory
        )
    ref = results.get("chgnet", {})
    ref_rate = ref.get("structures_per_s")
    table = Table(
        f"CHGNet 0.3.0 training step (efsm), batch {batch_size}, median of {steps}"
        + (
            f" (conservative every {conservative_every}: mean of whole cycles)"
            if conservative_every
            else ""
        ),
        ["what", "ms/step", "structures/s", "compile s", "peak MB", "vs chgnet"],
    )
    for i, r in enumerate(runs):
        key = _key(r)
        ours = results[key]
        if ref_rate:
            results["speedup_vs_chgnet" + key[len("equijax") :]] = (
                ours["structures_per_s"] / ref_rate
            )
        table.add(
            _label(r),
            f"{ours['ms_per_step']:.0f}",
            f"{ours['structures_per_s']:.1f}",
            f"{ours['compile_s']:.1f}",
            format_mb(ours["peak_memory_MB"])
            + ("" if i == 0 or not ours["peak_memory_MB"] else " (process)"),
            ratio(ours["structures_per_s"], ref_rate),
        )
    if ref_rate:
        table.add(
            "chgnet (torch), conservative",
            f"{ref['ms_per_step']:.0f}",
            f"{ref_rate:.1f}",
            "-",
            format_mb(ref["peak_memory_MB"]),
            "1.00x",
        )
    table.print()
    if breakdown:
        _breakdown_table(results, runs, batch_size).print()
    if memory:
        _memory_table(results, runs, batch_size).print()
    print(f"machine: {results['machine']['summary']}")
    results["complete"] = True
    write_json(results, out)
    return results
