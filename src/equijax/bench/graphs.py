"""`equijax bench graphs`: graph-construction throughput against CHGNet's converter, side by side
on the same structures in the same run, plus padding and load-balance figures."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from equijax.bench.common import Table, load_benchmark_structures, machine_info
from equijax.bench.proxy import init_proxy_params, proxy_train_step
from equijax.graphs import (
    BucketPolicy,
    CostModel,
    GraphSizes,
    atoms_to_graph,
    batch_graphs,
    calibrate_cost_model,
    graph_counts,
    load_imbalance,
    max_sizes,
    pad_batch,
    pad_graph,
    padding_fraction,
    split_balanced,
)
from equijax.graphs.neighbors import directed_edges


def _time_rounds(fn, rounds: int) -> float:
    """Best-of-``rounds`` wall time of ``fn()`` in seconds (the least disturbed run)."""
    best = np.inf
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _chgnet_converter_rate(structures, rounds: int) -> dict:
    """CHGNet 0.4.2's converter (its fast Cython path) on pymatgen structures, 1 thread."""
    try:  # optional reference (torch, chgnet): imported only when the reference runs
        import torch
        from chgnet.graph import CrystalGraphConverter
        from pymatgen.io.ase import AseAtomsAdaptor
    except ImportError as err:
        return {"available": False, "reason": f"reference extra not installed ({err})"}
    torch.set_num_threads(1)
    converter = CrystalGraphConverter(atom_graph_cutoff=6.0, bond_graph_cutoff=3.0)
    t0 = time.perf_counter()
    pmg = [AseAtomsAdaptor.get_structure(a) for a in structures]
    adaptor_s = time.perf_counter() - t0
    seconds = _time_rounds(lambda: [converter(s) for s in pmg], rounds)
    return {
        "available": True,
        "algorithm": converter.algorithm,
        "seconds": seconds,
        "structures_per_s": len(pmg) / seconds,
        "ase_to_pymatgen_structures_per_s": len(pmg) / adaptor_s,
    }


def _padding_report(
    graphs, counts, batch_size: int, n_devices: int, global_batch: int, seed: int
) -> dict:
    """Padding fraction and distinct shapes for single-device batches, and load imbalance and
    padding for ``n_devices``-way split global batches of ``global_batch`` graphs."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(graphs))
    policy = BucketPolicy(fixed_graphs=batch_size)
    real, padded = [], []
    for start in range(0, len(order) - batch_size + 1, batch_size):
        _, r = pad_batch([graphs[i] for i in order[start : start + batch_size]], policy)
        real.append(r)
        padded.append(policy.sizes_for(r))
    single = {
        "batch_size": batch_size,
        "n_batches": len(real),
        "distinct_shapes": len(set(padded)),
        "padding_fraction": padding_fraction(real, padded),
    }

    cost_model = CostModel()
    costs = cost_model(counts)
    whole = split_balanced(costs, n_devices)
    graph_sizes = np.array([graphs[i].sizes[:4] for i in range(len(graphs))], dtype=np.float64)

    device_policy = BucketPolicy(fixed_graphs=global_batch)  # one graph count for all steps

    def common_shape_padding(split):
        """Cost imbalances and padding of per-device batches padded to their common shape."""
        imbalances, real, padded = [], [], []
        for start in range(0, len(order) - global_batch + 1, global_batch):
            idx = order[start : start + global_batch]
            groups = split(idx)
            imbalances.append(load_imbalance(costs[idx], groups))
            sizes = [pad_batch([graphs[idx[k]] for k in g], device_policy)[1] for g in groups]
            common = max_sizes(device_policy.sizes_for(s) for s in sizes)
            real.extend(sizes)
            padded.extend([common] * len(sizes))
        return imbalances, padding_fraction(real, padded)

    imbalances, padding = common_shape_padding(
        lambda idx: split_balanced(costs[idx], n_devices, sizes=graph_sizes[idx])
    )
    _, padding_cost_only = common_shape_padding(lambda idx: split_balanced(costs[idx], n_devices))
    return {
        "single_device": single,
        "multi_device": {
            "n_devices": n_devices,
            "cost_model": cost_model.__dict__,
            "whole_set_imbalance": load_imbalance(costs, whole),
            "global_batch": global_batch,
            "per_step_imbalance_max": float(np.max(imbalances)),
            "per_step_imbalance_mean": float(np.mean(imbalances)),
            "padding_fraction_common_shape": padding,
            "padding_fraction_common_shape_cost_only": padding_cost_only,
        },
    }


def calibrate(graphs, seed: int = 0) -> dict:
    """Fit the cost model on the CHGNet-sized proxy step (forward + backward).

    Under static shapes the time depends on the padded sizes, so one batch is padded to a grid
    of sizes that varies atoms, edges and angles independently (a well-conditioned fit).
    """
    params = init_proxy_params(seed)
    rng = np.random.default_rng(seed)
    batched = batch_graphs([graphs[i] for i in rng.choice(len(graphs), 8, replace=False)])
    base = batched.sizes
    batches = []
    for fn, fe, fa in [
        (1, 1, 1),
        (8, 1, 1),
        (1, 3, 1),
        (1, 1, 3),
        (8, 3, 1),
        (1, 3, 3),
        (8, 1, 3),
        (8, 3, 3),
    ]:
        sizes = GraphSizes(
            base.n_node * fn + 16,
            base.n_edge * fe + 16,
            base.n_bond * fa + 16,
            base.n_angle * fa + 16,
            base.n_graph + 1,
        )
        batches.append(
            (pad_graph(batched, sizes), np.array([sizes.n_node, sizes.n_edge, sizes.n_angle]))
        )
    model = calibrate_cost_model(lambda g: proxy_train_step(params, g), batches)
    return model.__dict__


def run(
    out: str | None = "results/bench_graphs.json",
    rounds: int = 3,
    reference: bool = True,
    do_calibrate: bool = False,
    batch_size: int = 40,
    n_devices: int = 8,
    global_batch: int = 64,
    limit: int | None = None,
) -> dict:
    """Run the benchmark, print a table and write JSON to ``out``; returns the results.

    ``limit`` uses only the first structures of the benchmark set (for quick checks).
    """
    structures = load_benchmark_structures(limit)
    n = len(structures)

    def build():
        return [atoms_to_graph(a) for a in structures]

    graphs = build()
    counts = graph_counts(graphs)
    ours_s = _time_rounds(build, rounds)
    vesin_s = _time_rounds(
        lambda: [directed_edges(a.positions, a.cell.array, a.pbc, 6.0) for a in structures], rounds
    )
    results = {
        "benchmark": "graphs",
        "machine": machine_info(),
        "n_structures": n,
        "mean_atoms": float(counts[:, 0].mean()),
        "mean_directed_edges": float(counts[:, 1].mean()),
        "mean_angles": float(counts[:, 2].mean()),
        "equijax": {"seconds": ours_s, "structures_per_s": n / ours_s},
        "neighbor_list_only": {"structures_per_s": n / vesin_s},
    }
    if reference:
        ref = _chgnet_converter_rate(structures, max(1, rounds - 1))
        results["chgnet"] = ref
        if ref["available"]:
            results["speedup_vs_chgnet"] = (
                results["equijax"]["structures_per_s"] / ref["structures_per_s"]
            )
    results.update(_padding_report(graphs, counts, batch_size, n_devices, global_batch, seed=0))
    if do_calibrate:
        results["calibrated_cost_model"] = calibrate(graphs)

    table = Table("graph construction, 1 CPU thread", ["what", "structures/s", "vs chgnet"])
    ref_rate = results.get("chgnet", {}).get("structures_per_s")
    for name, rate in [
        ("equijax atoms_to_graph", results["equijax"]["structures_per_s"]),
        ("vesin neighbour list alone (a floor)", results["neighbor_list_only"]["structures_per_s"]),
        ("chgnet CrystalGraphConverter (fast)", ref_rate),
    ]:
        if rate is not None:
            table.add(name, f"{rate:.0f}", f"{rate / ref_rate:.1f}x" if ref_rate else "-")
    print(
        f"{n} structures: mean {results['mean_atoms']:.1f} atoms, "
        f"{results['mean_directed_edges']:.0f} directed edges (< 6 Å), {results['mean_angles']:.0f} angles "
        f"(bonds < 3 Å)\n"
    )
    table.print()
    single = results["single_device"]
    pf = single["padding_fraction"]
    print(
        f"\nbuckets (batch {batch_size}, {single['n_batches']} batches): {single['distinct_shapes']} shapes;"
        f" padding atoms {pf['n_node']:.1%} edges {pf['n_edge']:.1%} bonds {pf['n_bond']:.1%}"
        f" angles {pf['n_angle']:.1%}"
    )
    md = results["multi_device"]
    print(
        f"load balance over {n_devices} devices: whole set max/mean {md['whole_set_imbalance']:.4f};"
        f" global batches of {md['global_batch']}: max/mean worst {md['per_step_imbalance_max']:.4f},"
        f" mean {md['per_step_imbalance_mean']:.4f}"
    )
    pc, po = md["padding_fraction_common_shape"], md["padding_fraction_common_shape_cost_only"]
    print(
        f"  padding of the common per-device shape: edges {pc['n_edge']:.1%} angles {pc['n_angle']:.1%}"
        f" (cost-only balancing: edges {po['n_edge']:.1%} angles {po['n_angle']:.1%})"
    )
    if do_calibrate:
        print("calibrated cost model (proxy step, seconds):", results["calibrated_cost_model"])
    print(f"machine: {results['machine']['summary']}")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(results, indent=1))
        print(f"wrote {out}")
    return results
