"""`equijax bench mace`: equijax's MACE against mace-torch with the same weights, on the same
structures in the same run.

One mace-torch ``ScaleShiftMACE`` is built with random (mace's default-initialised, seeded)
weights at a MACE-MP-0-"medium"-like size (``--size medium``: 128x0e+128x1o, max_ell 3,
correlation 3, two residual interaction blocks, r_max 6 Å, 8 Bessel functions, radial MLP
[64, 64, 64], readout MLP 16x0e; ``--size small``: 32x0e+32x1o) and converted with
`equijax.models.mace.from_torch`, so both sides compute the same function in float32. Its
elements are the sorted union of Cu (the MD cells) and the benchmark structures' elements;
``avg_num_neighbors`` is the mean number of neighbours within r_max of those structures.

- ``md``: one structure's energy, forces and stress per call through the ASE calculators
  (`EquijaxCalculator` vs mace's ``MACECalculator``, which takes the torch module itself through
  its ``models=`` argument, no file), atoms moved a little between calls, as in MD, for rattled
  fcc Cu cells;
- ``infer``: batched energy, forces and stress of the benchmark structures (equijax's compiled,
  padded batch vs one mace ``torch_geometric`` batch);
- ``train``: one Adam step of an energy + forces + stress loss on that batch (forces by autodiff,
  so the step differentiates twice; each side's stress in its own unit, GPa vs eV/Å³, which
  changes the loss value but not the work).

Both sides' energies (eV/atom) and forces (eV/Å) are compared: for ``infer`` on the batch, for
``md`` at the last positions (both calculators see the same moves). The per-element reference
energies (E0s) are zero, so the energies compared are the network's alone, not hidden under
large E0s at float32 rounding. mace-torch runs with as many torch threads as
the machine has cores (XLA uses them all too). Each row gives both times and their ratio
(mace-torch / equijax); CPU rows also give XLA's FLOP count of the equijax program and the
achieved fraction of this machine's measured float32 matmul rate.

mlip (InstaDeep's JAX MACE) is not run here; see `MLIP_NOTE` (also written to the JSON).
"""

from __future__ import annotations

import copy
import os

import jax
import numpy as np

from equijax.bench.common import Table, load_benchmark_structures, machine_info, md_cell, write_json
from equijax.bench.sevennet import _equijax_train_step, _flops, _median
from equijax.bench.tp import machine_rates
from equijax.calculators import EquijaxCalculator
from equijax.graphs import BucketPolicy, atoms_to_graph, pad_batch
from equijax.models.mace import from_torch
from equijax.potential import Potential

SIZES = {"medium": "128x0e+128x1o", "small": "32x0e+32x1o"}
R_MAX = 6.0
MLIP_NOTE = (
    "not run in this process: mlip 0.2.5 (PyPI) needs e3j 0.1.1, which pins setuptools<78.2, so "
    "installing it would downgrade equijax's setuptools 84.2.1 (its other pins, jax, flax ~=0.12, "
    "e3nn-jax>=0.20.7, fit); and mlip's MACE cannot load mace-torch weights. It is measured in "
    "its own venv at this bench's config by experiments/mace/mlip_bench.py "
    "(experiments/mace/bench_mlip.json)"
)


def mace_torch_model(atomic_numbers, hidden_irreps: str, avg_num_neighbors: float, seed=0):
    """A float32 mace-torch ``ScaleShiftMACE`` (MACE-MP-0-like architecture, see the module
    docstring) with mace's default random initialisation under ``torch.manual_seed(seed)``."""
    import torch
    from e3nn import o3
    from mace import modules

    torch.manual_seed(seed)
    block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        model = modules.ScaleShiftMACE(
            r_max=R_MAX,
            num_bessel=8,
            num_polynomial_cutoff=5,
            max_ell=3,
            interaction_cls=block,
            interaction_cls_first=block,
            num_interactions=2,
            num_elements=len(atomic_numbers),
            hidden_irreps=o3.Irreps(hidden_irreps),
            MLP_irreps=o3.Irreps("16x0e"),
            atomic_energies=np.zeros(len(atomic_numbers)),
            avg_num_neighbors=avg_num_neighbors,
            atomic_numbers=[int(z) for z in atomic_numbers],
            correlation=3,
            gate=torch.nn.functional.silu,
            radial_MLP=[64, 64, 64],
            atomic_inter_scale=1.0,
            atomic_inter_shift=0.0,
        )
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def mean_neighbours(structures, r_max: float = R_MAX) -> float:
    """Mean number of neighbours within ``r_max`` (Å) per atom over ``structures``."""
    from ase.neighborlist import neighbor_list

    edges = sum(len(neighbor_list("i", a, r_max)) for a in structures)
    return edges / sum(len(a) for a in structures)


def _calculator_run(calc, atoms, steps: int) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    """Median seconds of an e+f+s call with atoms moved a little between calls, and the energy
    (eV/atom) and forces at the last positions (the same moves for every calculator)."""
    atoms = atoms.copy()
    atoms.calc = calc
    rng = np.random.default_rng(0)

    def call():
        atoms.positions += rng.normal(scale=1e-3, size=atoms.positions.shape)
        atoms.get_forces()
        atoms.get_stress()

    seconds = _median(call, steps)
    energy = np.array([atoms.get_potential_energy() / len(atoms)])
    return seconds, (energy, np.array(atoms.get_forces()))


def _mace_batch(model, structures) -> dict:
    """One mace ``torch_geometric`` batch of ``structures`` (mace's matscipy neighbour list)."""
    from mace import data as mace_data
    from mace.tools import torch_geometric, utils

    z_table = utils.AtomicNumberTable([int(z) for z in model.atomic_numbers])
    cutoff = float(model.r_max)
    data = [
        mace_data.AtomicData.from_config(
            mace_data.config_from_atoms(a), z_table=z_table, cutoff=cutoff
        )
        for a in structures
    ]
    return next(iter(torch_geometric.dataloader.DataLoader(data, batch_size=len(data))))


def _mace_infer(model, batch, steps: int) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    """Median seconds of a batched e+f+s call, and the energies (G,) eV and forces (N, 3)."""

    def call():
        return model(batch.to_dict(), compute_force=True, compute_stress=True, training=False)

    out = call()
    return _median(call, steps), (out["energy"].detach().numpy(), out["forces"].detach().numpy())


def _mace_train_seconds(model, batch, steps: int) -> float:
    """Median seconds of an Adam step on the same loss as `_equijax_train_step` (targets 0)."""
    import torch

    model = copy.deepcopy(model).train()
    for p in model.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        data = batch.to_dict()
        out = model(data, compute_force=True, compute_stress=True, training=True)
        n_atoms = (data["ptr"][1:] - data["ptr"][:-1]).to(out["energy"].dtype)
        loss = (
            ((out["energy"] / n_atoms) ** 2).mean()
            + (out["forces"] ** 2).mean()
            + 0.01 * (out["stress"] ** 2).mean()
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return _median(step, steps)


def run(
    size: str = "medium",
    batch_size: int = 8,
    md_atoms: tuple[int, ...] = (32, 108),
    steps: int = 3,
    reference: bool = True,
    modes: tuple[str, ...] = ("md", "infer", "train"),
    out: str | None = "results/bench_mace.json",
) -> dict:
    """Time the modes, print the table, write JSON (see the module docstring)."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {sorted(SIZES)}")
    import torch

    info = machine_info()
    rates = machine_rates(big=jax.default_backend() != "cpu")
    print(f"machine: {info['summary']}; float32 matmul {rates['matmul_tflop_s'] * 1e3:.0f} GFLOP/s")
    structures = load_benchmark_structures(batch_size)
    n_atoms = np.array([len(a) for a in structures])
    numbers = sorted({29} | {int(z) for a in structures for z in a.numbers})
    avg_neighbours = mean_neighbours(structures)
    torch_model = mace_torch_model(numbers, SIZES[size], avg_neighbours)
    module, params = from_torch(torch_model)
    policy = BucketPolicy(fixed_graphs=batch_size)
    potential = Potential(module, params, policy=policy)
    graphs = [atoms_to_graph(a, potential.cutoff, potential.bond_cutoff) for a in structures]
    graph = jax.device_put(pad_batch(graphs, policy)[0])
    what = f"{batch_size} benchmark structures ({sum(len(a) for a in structures)} atoms)"
    rows = []
    # every equijax row first, then mace-torch's: torch's idle OpenMP threads keep spinning for
    # a while after each call and would slow whatever runs next on the same cores
    if "md" in modes:
        calc = EquijaxCalculator(module, params)
        for n in md_atoms:
            atoms = md_cell(n)
            row = {"mode": "md", "what": f"Cu{len(atoms)}, calculator e+f+s per call", "atoms": n}
            row["equijax_s"], row["check"] = _calculator_run(calc, atoms, steps)
            rows.append(row)
            print(_progress(row))
    if "infer" in modes:
        predict = potential._predict
        row = {"mode": "infer", "what": what + ", e+f+s"}
        row["equijax_s"] = _median(
            lambda: jax.block_until_ready(predict(potential.params, graph, True)), steps
        )
        row["equijax_gflop"] = (_flops(predict, potential.params, graph, True) or 0) / 1e9
        pred = predict(potential.params, graph, True)
        energies = np.asarray(pred["energy"])[: len(structures)] / n_atoms
        row["check"] = (energies, np.asarray(pred["forces"])[: int(np.sum(n_atoms))])
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
        from mace.calculators import MACECalculator

        torch.set_num_threads(os.cpu_count() or 1)  # every core, as XLA (the CLI pins 1)
        print(f"mace-torch: torch {torch.__version__} on {torch.get_num_threads()} threads")
        batch = _mace_batch(torch_model, structures)
        for row in rows:
            if row["mode"] == "md":
                # the calculator freezes its model's parameters: give it a copy
                ref = MACECalculator(models=copy.deepcopy(torch_model), default_dtype="float32")
                row["reference_s"], check = _calculator_run(ref, md_cell(row["atoms"]), steps)
            elif row["mode"] == "infer":
                row["reference_s"], (energies, forces) = _mace_infer(torch_model, batch, steps)
                check = (energies / n_atoms, forces)
            else:
                row["reference_s"] = _mace_train_seconds(torch_model, batch, steps)
            if "check" in row:  # the same function: energies and forces agree (float32)
                (e, f), (e_ref, f_ref) = row.pop("check"), check
                row["max_energy_diff_ev_per_atom"] = float(np.max(np.abs(e - e_ref)))
                row["max_force_diff_ev_per_a"] = float(np.max(np.abs(f - f_ref)))
                row["max_force_ev_per_a"] = float(np.max(np.abs(f_ref)))
            print(_progress(row))
    for row in rows:
        row.pop("check", None)
        if row.get("reference_s"):
            row["speedup"] = row["reference_s"] / row["equijax_s"]
        if row.get("equijax_gflop"):
            achieved = row["equijax_gflop"] / row["equijax_s"]
            row["fraction_of_matmul"] = achieved / (rates["matmul_tflop_s"] * 1e3)
    agree = [r for r in rows if "max_energy_diff_ev_per_atom" in r]
    if agree:
        e = max(r["max_energy_diff_ev_per_atom"] for r in agree)
        f = max(r["max_force_diff_ev_per_a"] for r in agree)
        f_max = max(r["max_force_ev_per_a"] for r in agree)
        print(
            f"agreement with mace-torch: energies {e:.1e} eV/atom, forces {f:.1e} eV/Å "
            f"(largest force {f_max:.1e} eV/Å)"
        )
    print(f"mlip: {MLIP_NOTE}")
    title = f"MACE {size} ({SIZES[size]}), {len(numbers)} elements: equijax vs mace-torch"
    table = Table(
        f"{title} (median of {steps})",
        ["mode", "what", "equijax s", "mace-torch s", "speed-up", "GFLOP", "of matmul"]
        + ["|ΔE| eV/atom", "|ΔF| eV/Å"],
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
                *(
                    f"{r[k]:.1e}" if k in r else "-"
                    for k in ("max_energy_diff_ev_per_atom", "max_force_diff_ev_per_a")
                ),
            ]
        )
    print(table.render())
    results = {
        "model": f"mace-{size}",
        "hidden_irreps": SIZES[size],
        "atomic_numbers": numbers,
        "avg_num_neighbors": avg_neighbours,
        "torch": torch.__version__,
        "machine": info,
        "rates": rates,
        "rows": rows,
        "mlip": MLIP_NOTE,
    }
    write_json(results, out)
    return results


def _progress(row: dict) -> str:
    ref = f", mace-torch {row['reference_s']:.3f} s" if row.get("reference_s") else ""
    return f"  {row['mode']}: {row['what']}: equijax {row['equijax_s']:.3f} s{ref}"
