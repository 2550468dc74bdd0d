"""`equijax bench chgnet-infer`: efsm inference throughput of the pretrained CHGNet in equijax
against the PyTorch chgnet, side by side on the same structures and batches in the same run."""

from __future__ import annotations

import time

import jax
import numpy as np

from equijax.bench.common import (
    Table,
    format_mb,
    load_benchmark_structures,
    machine_info,
    ratio,
    share_gpu_with_torch,
    write_json,
)
from equijax.bench.sevennet import _flops
from equijax.bench.tp import machine_rates
from equijax.graphs import (
    BucketPolicy,
    atoms_to_graph,
    pad_batch,
    padding_fraction,
)
from equijax.potential import Potential


def _batches(items, batch_size):
    return [items[i : i + batch_size] for i in range(0, len(items) - batch_size + 1, batch_size)]


def _equijax_rate(structures, batch_size: int, steps: int) -> dict:
    potential = Potential.from_pretrained("0.3.0", policy=BucketPolicy(fixed_graphs=batch_size))
    graphs = [atoms_to_graph(a) for a in structures]
    batches = _batches(graphs, batch_size)[:steps]
    # each batch padded to its size bucket and compiled before timing (steady state of a long run)
    padded, reals = [], []
    for b in batches:
        p, real = pad_batch(b, potential.policy)
        padded.append(jax.device_put(p))
        reals.append(real)
    t0 = time.perf_counter()
    for p in padded:
        jax.block_until_ready(potential.predict_padded(p, True))
    compile_s = time.perf_counter() - t0
    times = []
    for k in range(steps):
        t0 = time.perf_counter()
        jax.block_until_ready(potential.predict_padded(padded[k % len(padded)], True))
        times.append(time.perf_counter() - t0)
    # end to end: graph construction + padding + transfer + prediction, as a user would run it
    subset = structures[: batch_size * min(len(padded), 2)]
    potential.predict(subset, batch_size=batch_size)  # compile its per-batch buckets first
    t0 = time.perf_counter()
    predictions = potential.predict(subset, batch_size=batch_size)
    e2e = time.perf_counter() - t0
    stats = jax.devices()[0].memory_stats() or {}
    # the model's FLOPs of the first batch, from XLA's cost analysis of the plain (unpieced)
    # form of the same function: the analysis counts a scan's body once, so the pieces' count
    # would be too low; the achieved rate is that over the first batch's time
    gflop = (_flops(potential._predict, potential.params, padded[0], True) or 0.0) / 1e9
    return {
        "gflop_first_batch": gflop,
        "achieved_gflop_s": gflop / times[0] if gflop else None,
        "structures_per_s": batch_size / float(np.median(times)),
        "ms_per_batch": 1e3 * float(np.median(times)),
        "compile_s": compile_s,
        "padding_fraction": padding_fraction(reals, [p.sizes for p in padded]),
        "distinct_shapes": len({p.sizes for p in padded}),
        "end_to_end_structures_per_s": len(subset) / e2e,
        "peak_memory_MB": stats.get("peak_bytes_in_use", 0) / 2**20 or None,
        "first_batch": predictions[:batch_size],
    }


def _chgnet_rate(structures, batch_size: int, steps: int) -> dict:
    try:  # optional reference (torch, chgnet): imported only when the reference runs
        import torch
        from chgnet.model import CHGNet
        from pymatgen.io.ase import AseAtomsAdaptor
    except ImportError as err:
        return {"available": False, "reason": f"reference extra not installed ({err})"}
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model = CHGNet.load(model_name="0.3.0", use_device=dev, verbose=False).eval()
    graphs = [model.graph_converter(AseAtomsAdaptor.get_structure(a)) for a in structures]
    batches = _batches(graphs, batch_size)

    def infer(batch):
        for g in batch:
            g.atom_frac_coord.requires_grad = True
        out = model([g.to(dev) for g in batch], task="efsm")
        if dev == "cuda":
            torch.cuda.synchronize()
        return out

    first = infer(batches[0])
    first_batch = [
        {
            "energy_per_atom": float(first["e"][k]),
            "forces": first["f"][k].detach().cpu().numpy(),
            "stress": first["s"][k].detach().cpu().numpy(),
            "magmoms": first["m"][k].detach().cpu().numpy(),
        }
        for k in range(batch_size)
    ]
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for k in range(steps):
        t0 = time.perf_counter()
        infer(batches[k % len(batches)])
        times.append(time.perf_counter() - t0)
    return {
        "available": True,
        "device": dev,
        "structures_per_s": batch_size / float(np.median(times)),
        "ms_per_batch": 1e3 * float(np.median(times)),
        "peak_memory_MB": torch.cuda.max_memory_allocated() / 2**20 if dev == "cuda" else None,
        "first_batch": first_batch,
    }


def _max_differences(ours: list[dict], ref: list[dict]) -> dict:
    """Largest absolute differences over a batch: energy per atom, forces, stress, magmoms."""
    return {
        key: float(
            max(np.max(np.abs(np.asarray(o[key]) - np.asarray(r[key]))) for o, r in zip(ours, ref))
        )
        for key in ("energy_per_atom", "forces", "stress", "magmoms")
    }


def default_batch_size() -> int:
    """40 (the anchor's batch) on an accelerator; 8 on a CPU, where the PyTorch reference needs
    over 23 GB at batch 40 (its force graph is kept for double backward)."""
    return 40 if jax.default_backend() != "cpu" else 8


def run(
    out: str | None = "results/bench_chgnet_infer.json",
    batch_size: int | None = None,
    steps: int = 6,
    limit: int | None = None,
    reference: bool = True,
) -> dict:
    """Run the benchmark, print a table and write JSON; returns the results. With ``reference``,
    JAX's GPU preallocation is turned off first (`share_gpu_with_torch`)."""
    if reference:
        share_gpu_with_torch()
    batch_size = batch_size or default_batch_size()
    structures = load_benchmark_structures(limit)
    if len(structures) < batch_size:
        raise ValueError(
            f"need at least batch_size={batch_size} structures, have {len(structures)}"
        )
    results = {
        "benchmark": "chgnet-infer",
        "task": "efsm",
        "machine": machine_info(),
        "n_structures": len(structures),
        "batch_size": batch_size,
        "steps": steps,
        "equijax": _equijax_rate(structures, batch_size, steps),
        "rates": machine_rates(big=jax.default_backend() != "cpu"),
    }
    achieved = results["equijax"]["achieved_gflop_s"]
    if achieved:
        results["equijax"]["fraction_of_matmul"] = achieved / (
            results["rates"]["matmul_tflop_s"] * 1e3
        )
    if reference:
        results["chgnet"] = _chgnet_rate(structures, batch_size, steps)
        if results["chgnet"]["available"]:
            results["speedup_vs_chgnet"] = (
                results["equijax"]["structures_per_s"] / results["chgnet"]["structures_per_s"]
            )
            results["max_abs_difference_first_batch"] = _max_differences(
                results["equijax"]["first_batch"], results["chgnet"]["first_batch"]
            )
    for side in ("equijax", "chgnet"):
        results.get(side, {}).pop("first_batch", None)
    ours, ref = results["equijax"], results.get("chgnet", {})
    table = Table(
        f"CHGNet 0.3.0 efsm inference, batch {batch_size} (median of {steps} batches)",
        ["what", "structures/s", "ms/batch", "peak MB", "vs chgnet"],
    )
    ref_rate = ref.get("structures_per_s")

    table.add(
        "equijax (jit, graphs prebuilt)",
        f"{ours['structures_per_s']:.1f}",
        f"{ours['ms_per_batch']:.0f}",
        format_mb(ours["peak_memory_MB"]),
        ratio(ours["structures_per_s"], ref_rate),
    )
    table.add(
        "equijax end to end (graphs built)",
        f"{ours['end_to_end_structures_per_s']:.1f}",
        "-",
        "-",
        ratio(ours["end_to_end_structures_per_s"], ref_rate),
    )
    if ref_rate:
        table.add(
            "chgnet (torch, graphs prebuilt)",
            f"{ref_rate:.1f}",
            f"{ref['ms_per_batch']:.0f}",
            format_mb(ref["peak_memory_MB"]),
            "1.00x",
        )
    table.print()
    if "max_abs_difference_first_batch" in results:
        d = results["max_abs_difference_first_batch"]
        print(
            f"agreement on the first batch (max |equijax - chgnet|): energy {d['energy_per_atom']:.1e} eV/atom,"
            f" forces {d['forces']:.1e} eV/Å, stress {d['stress']:.1e} GPa, magmoms {d['magmoms']:.1e} μB"
        )
    if ours.get("fraction_of_matmul"):
        print(
            f"equijax: {ours['gflop_first_batch']:.1f} GFLOP per batch (XLA cost analysis), "
            f"{ours['achieved_gflop_s']:.1f} GFLOP/s = {ours['fraction_of_matmul']:.1%} of this "
            f"machine's float32 matmul rate ({results['rates']['matmul_tflop_s'] * 1e3:.0f} "
            "GFLOP/s, measured in this run)"
        )
    pf = ours["padding_fraction"]
    print(
        f"equijax: {ours['distinct_shapes']} bucket shape(s) (padding: edges {pf['n_edge']:.1%},"
        f" angles {pf['n_angle']:.1%}), compiled in {ours['compile_s']:.1f} s before timing;"
        f" machine: {results['machine']['summary']}"
    )
    write_json(results, out)
    return results
