"""InstaDeep's mlip MACE, timed at the configuration of `equijax bench mace`, in its own venv.

mlip cannot be installed beside equijax (its dependency e3j 0.1.1 pins setuptools<78.2, below
equijax's), so this script runs only in a separate virtual environment and imports nothing from
equijax::

    python3 -m venv /tmp/mlip_venv && /tmp/mlip_venv/bin/pip install mlip
    /tmp/mlip_venv/bin/python experiments/mace/mlip_bench.py --size medium --out /tmp/m1.json
    equijax bench mace --no-reference --out /tmp/e1.json   # in equijax's venv; alternate runs
    /tmp/mlip_venv/bin/python experiments/mace/mlip_bench.py --no-run --out /tmp/m2.json \\
        --merge /tmp/m1.json --compare run1 /tmp/e1.json --compare run2 /tmp/e2.json \\
        --reference committed experiments/mace/bench_mace.json

The model is mlip's own ``Mace`` (random weights, ``ForceField.from_mlip_network``, seed 0) at
the architecture of equijax's benchmark (MACE-MP-0-"medium"-like): 2 layers, ``num_channels``
128 (``--size small``: 32), ``node_symmetry`` 1 so the hidden features are 128x0e+128x1o (mlip's
default would keep l <= l_max = 3), ``l_max`` 3, correlation 3, r_max 6 Å, 8 Bessel functions
with mlip's polynomial envelope (p = 5), radial MLP [64, 64, 64], readout MLP 16x0e, a
residual (species-wise linear) skip connection on the first layer too (equijax's benchmark uses
mace-torch's ``RealAgnosticResidualInteractionBlock`` for both layers), zero E0s, and
``avg_num_neighbors`` the mean number of neighbours within r_max of the benchmark structures.
Elements: the sorted union of Cu and the benchmark structures' elements, as in equijax's bench.
mlip cannot load mace-torch weights, so the two do not compute the same function: only the
cost is compared (see ``MODEL_NOTES`` for where mlip's MACE differs).

- ``md``: one structure's energy, forces and stress per call through mlip's ASE calculator
  (``MLIPForceFieldASECalculator``: matscipy neighbour list, padding to a fixed capacity with
  an edge-capacity multiplier of 1.25 as in mlip's simulation configs, ``jax.jit`` of
  ``ForceField.calculate``), atoms moved a little between calls, for rattled fcc Cu cells. The
  stock calculator implements only energy and forces; a subclass here adds ``stress`` (the
  force field is built with ``Properties(stress=True)``, the same jitted call returns it);
- ``infer``: batched energy, forces and stress of the first 8 benchmark structures (one mlip
  ``Graph`` batch from ``Graph.from_chemical_system`` + ``dynamically_batch``, jitted
  ``ForceField.calculate``);
- ``train``: one Adam step (``optax.adam(1e-4)``) on the same loss as equijax's bench (targets
  zero: mean (E/atom)^2 + mean F^2 + 0.01 mean S^2 over real graphs/atoms), differentiating
  mlip's predictor (``predictor.apply``; forces and stress by autodiff inside, so the step
  differentiates twice). mlip's own ``make_train_step`` also carries EMA and metrics, so it is
  not used: the step here is the same work as equijax's.

Each time is the median of ``--steps`` calls after one warm-up call (compilation excluded).
On a shared, loaded CPU one run is noisy, so runs of this script and of ``equijax bench mace
--no-reference`` are made in alternation: ``--merge`` pools the runs of other outputs of this
script, ``--compare LABEL EQUIJAX_JSON`` adds each equijax run, and the summary gives per row
the median over the mlip runs, over the equijax runs and their ratio mlip / equijax (rows
matched by mode and atom count); ``--reference LABEL EQUIJAX_JSON`` adds the committed equijax
JSON separately. ``--no-run`` only redoes the comparison in an existing ``--out`` JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

import ase.build
import ase.io
import jax
import jax.numpy as jnp
import numpy as np
import optax
from ase.calculators.calculator import Calculator, all_changes
from ase.neighborlist import neighbor_list
from ase.stress import full_3x3_to_voigt_6_stress

REPO = Path(__file__).resolve().parents[2]
STRUCTURES = REPO / "src/equijax/bench/data/mptrj_like_256.extxyz"
SIZES = {"medium": 128, "small": 32}
R_MAX = 6.0
EDGE_CAPACITY_MULTIPLIER = 1.25  # mlip.simulation.configs DEFAULT_EDGE_CAPACITY_MULT
MODEL_NOTES = [
    "hidden features: num_channels x spherical_harmonics(node_symmetry); node_symmetry=1 gives "
    "128x0e+128x1o as equijax/mace-torch (mlip's default node_symmetry = l_max = 3 would keep "
    "128x(0e+1o+2e+3o)); the last layer keeps only 128x0e, as mace-torch",
    "symmetric contraction: e3j PowerExpansion (iterated, unreduced Clebsch-Gordan powers "
    "A, A(x)A, A(x)A(x)A filtered to reachable irreps) + species- and channel-wise linear "
    "mixing (e3j LinearIndexwise), where mace-torch/equijax contract with the reduced "
    "symmetric generalised-CG (U-matrix) basis and species-wise weights: the same function "
    "space, a different (redundant) basis and parameter count",
    "interaction: e3j Linear -> unfused gather/CG tensor product with spherical harmonics "
    "(natural parities only, as mace-torch) weighted by the radial MLP (no bias, silu, "
    "normalised activation) -> scatter-add / avg_num_neighbors -> Linear, as mace-torch's "
    "RealAgnosticResidualInteractionBlock; first-layer skip is a species-wise linear "
    "(residual_connection_first_layer=True) standing in for mace-torch's skip_tp",
    "radial: Bessel(8) x polynomial envelope p=5, no avg_r_min prefactor (avg_r_min=None), "
    "as mace-torch",
    "readout: linear 0e per non-last layer; last layer Linear -> 16x0e -> gate(silu) -> "
    "Linear 0e, as mace-torch's NonLinearReadoutBlock",
    "stress: (1/V) dE/d(strain), a symmetrised strain applied to positions and cell, "
    "eV/A^3, as mace-torch (which the calculator reports in ASE's Voigt order)",
    "float32, XLA CPU, e3j config UNFUSED tensor product / convolution (the fused kernels are "
    "CUDA / TPU only)",
]


def _median(fn, steps: int) -> float:
    fn()  # warm-up (compiles, caches)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def md_cell(n_atoms: int) -> ase.Atoms:
    """A rattled fcc Cu supercell with about ``n_atoms`` atoms (4 k^3), as equijax's bench."""
    k = max(1, round((n_atoms / 4) ** (1 / 3)))
    atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True) * (k, k, k)
    atoms.rattle(0.05, seed=0)
    return atoms


def mean_neighbours(structures, r_max: float = R_MAX) -> float:
    edges = sum(len(neighbor_list("i", a, r_max)) for a in structures)
    return edges / sum(len(a) for a in structures)


def machine_info() -> dict:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(
            (ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if "Model name" in ln),
            platform.processor(),
        )
    except OSError:
        model = platform.processor()
    versions = {}
    for p in ("mlip", "e3j", "jax", "jaxlib", "flax", "e3nn-jax", "optax", "matscipy", "ase"):
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    return {
        "cpu": model,
        "cpu_count": os.cpu_count(),
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "python": platform.python_version(),
        "versions": versions,
        "summary": f"{model} ({os.cpu_count()} cores), jax {jax.__version__} on "
        f"{jax.default_backend()}, mlip {versions['mlip']}",
    }


def build_force_field(numbers, num_channels: int, avg_neighbours: float, seed: int = 0):
    """mlip's MACE at equijax's bench architecture (module docstring), random weights."""
    from mlip.data.dataset_info import DatasetInfo
    from mlip.models import ForceField
    from mlip.models.mace.network import Mace
    from mlip.typing.properties import Properties

    config = Mace.Config(
        num_layers=2,
        num_channels=num_channels,
        l_max=3,
        node_symmetry=1,
        correlation=3,
        readout_irreps=("16x0e", "0e"),
        num_rbf=8,
        radial_envelope="polynomial_envelope",
        radial_mlp_hidden=[64, 64, 64],
        activation="silu",
        radial_mlp_activation="silu",
        residual_connection_first_layer=True,
        include_pseudotensors=False,
        add_atomic_energies=True,
    )
    info = DatasetInfo(
        atomic_energies_map={int(z): 0.0 for z in numbers},
        graph_cutoff_angstrom=R_MAX,
        avg_num_neighbors=avg_neighbours,
        avg_r_min_angstrom=None,
    )
    network = Mace(config=config, dataset_info=info)
    ff = ForceField.from_mlip_network(
        network, required_properties=Properties(stress=True), seed=seed
    )
    return ff, config


def stress_calculator_class():
    from mlip.simulation.ase.mlip_ase_calculator import MLIPForceFieldASECalculator

    class StressCalculator(MLIPForceFieldASECalculator):
        """mlip's ASE calculator (same graph building, padding and jitted call) + stress."""

        implemented_properties = ["energy", "forces", "stress"]

        def calculate(self, atoms=None, properties=None, system_changes=all_changes):
            Calculator.calculate(self, atoms, properties, system_changes)
            graph = self._prepare_graph(atoms)
            pred = self.model_apply_fun(graph).to_prediction()
            self.results["energy"] = float(np.asarray(pred.energy)[0])
            self.results["forces"] = np.asarray(pred.forces)[: len(atoms)]
            self.results["stress"] = full_3x3_to_voigt_6_stress(np.asarray(pred.stress)[0])

    return StressCalculator


def batch_graph(structures, cutoff: float):
    """One padded mlip ``Graph`` batch (one padding graph, +1 node, +1 edge)."""
    from mlip.data.chemical_system import ChemicalSystem
    from mlip.data.helpers.dynamically_batch import dynamically_batch
    from mlip.graph import Graph
    from mlip.graph.edge_ordering import DEFAULT_EDGE_ORDERING

    graphs = [
        Graph.from_chemical_system(
            ChemicalSystem.from_ase_atoms(a, get_property_fields=False),
            cutoff,
            ordering=DEFAULT_EDGE_ORDERING,
        )
        for a in structures
    ]
    n_node = sum(len(a) for a in structures)
    n_edge = sum(len(g.senders) for g in graphs)
    batches = list(
        dynamically_batch(graphs, n_node=n_node + 1, n_edge=n_edge + 1, n_graph=len(graphs) + 1)
    )
    assert len(batches) == 1
    return jax.device_put(batches[0]), n_edge


def train_step_fn(ff):
    predictor = ff.predictor
    optimizer = optax.adam(1e-4)

    def loss(params, graph):
        out = predictor.apply(params, graph)
        g, n = graph.graph_mask(), graph.node_mask()
        n_atoms = jnp.where(g, graph.n_node, 1)
        e = jnp.where(g, out.globals.energy / n_atoms, 0.0)
        f = jnp.where(n[:, None], out.nodes.forces, 0.0)
        s = jnp.where(g[:, None, None], out.globals.stress, 0.0)
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


def run(size, batch_size, md_atoms, steps, modes) -> dict:
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    structures = ase.io.read(STRUCTURES, f":{batch_size}")
    numbers = sorted({29} | {int(z) for a in structures for z in a.numbers})
    avg_neighbours = mean_neighbours(structures)
    info = machine_info()
    print(f"machine: {info['summary']}")
    ff, config = build_force_field(numbers, SIZES[size], avg_neighbours)
    n_params = int(sum(np.size(x) for x in jax.tree.leaves(ff.params)))
    print(f"mlip MACE {size}: {n_params} parameters, {len(numbers)} elements")
    n_total = sum(len(a) for a in structures)
    what = f"{batch_size} benchmark structures ({n_total} atoms)"
    rows = []
    if "md" in modes:
        calc_cls = stress_calculator_class()
        for n in md_atoms:
            atoms = md_cell(n)
            calc = calc_cls(atoms.copy(), EDGE_CAPACITY_MULTIPLIER, ff)
            atoms.calc = calc
            rng = np.random.default_rng(0)

            def call(atoms=atoms, rng=rng):
                atoms.positions += rng.normal(scale=1e-3, size=atoms.positions.shape)
                atoms.get_forces()
                atoms.get_stress()

            row = {"mode": "md", "what": f"Cu{len(atoms)}, calculator e+f+s per call"}
            row["atoms"] = len(atoms)
            row["mlip_s"] = _median(call, steps)
            row["energy_ev_per_atom"] = atoms.get_potential_energy() / len(atoms)
            row["max_force_ev_per_a"] = float(np.abs(atoms.get_forces()).max())
            row["max_stress_ev_per_a3"] = float(np.abs(atoms.get_stress()).max())
            rows.append(row)
            print(f"  md: {row['what']}: mlip {row['mlip_s']:.3f} s")
    graph = None
    if "infer" in modes or "train" in modes:
        graph, n_edge = batch_graph(structures, R_MAX)
    if "infer" in modes:
        calculate = jax.jit(ff.calculate)
        row = {"mode": "infer", "what": what + ", e+f+s", "atoms": n_total, "edges": n_edge}
        row["mlip_s"] = _median(lambda: jax.block_until_ready(calculate(graph)), steps)
        pred = calculate(graph).to_prediction()
        n_atoms = np.array([len(a) for a in structures])
        row["max_abs_energy_ev_per_atom"] = float(
            np.abs(np.asarray(pred.energy)[:batch_size] / n_atoms).max()
        )
        row["max_force_ev_per_a"] = float(np.abs(np.asarray(pred.forces)[:n_total]).max())
        rows.append(row)
        print(f"  infer: {row['what']}: mlip {row['mlip_s']:.3f} s")
    if "train" in modes:
        step, optimizer = train_step_fn(ff)
        state = {"params": ff.params, "opt": optimizer.init(ff.params)}

        def train_step():
            state["params"], state["opt"], value = step(state["params"], state["opt"], graph)
            jax.block_until_ready(value)

        row = {"mode": "train", "what": what + ", Adam step on e+f+s loss", "atoms": n_total}
        row["mlip_s"] = _median(train_step, steps)
        rows.append(row)
        print(f"  train: {row['what']}: mlip {row['mlip_s']:.3f} s")
    return {
        "model": f"mlip-mace-{size}",
        "hidden_irreps": f"{SIZES[size]}x0e+{SIZES[size]}x1o",
        "mlip_config": json.loads(config.model_dump_json()),
        "n_params": n_params,
        "atomic_numbers": numbers,
        "avg_num_neighbors": avg_neighbours,
        "edge_capacity_multiplier": EDGE_CAPACITY_MULTIPLIER,
        "steps": steps,
        "machine": info,
        "model_notes": MODEL_NOTES,
        "install": (
            "mlip 0.2.5 installs into its own venv (python3 -m venv + pip install mlip: jax "
            "0.10.2, flax 0.12.8, e3nn-jax 0.21.0, e3j 0.1.1, setuptools downgraded to 78.1.1 "
            "there); not beside equijax because e3j pins setuptools<78.2"
        ),
        "rows": rows,
        "runs": [
            {
                "started": started,
                "rows": [{k: r[k] for k in ("mode", "atoms", "mlip_s")} for r in rows],
            }
        ],
    }


def _key(row: dict) -> tuple[str, int]:
    atoms = row.get("atoms")
    if atoms is None and "(" in row["what"]:  # "8 benchmark structures (284 atoms)"
        atoms = int(row["what"].split("(")[1].split()[0])
    return row["mode"], atoms


def _equijax_run(results: dict, label: str, path: str) -> dict:
    """The times of one ``equijax bench mace`` JSON, checked to be the same model size."""
    eq = json.loads(Path(path).read_text())
    size = results["model"].removeprefix("mlip-mace-")
    if eq.get("model") != f"mace-{size}":
        raise ValueError(f"{path} is {eq.get('model')!r}, not mace-{size}")
    return {
        "label": label,
        "json": path,
        "machine": eq.get("machine", {}).get("summary"),
        "rows": [
            {
                "mode": m,
                "atoms": a,
                "equijax_s": r["equijax_s"],
                "mace_torch_s": r.get("reference_s"),
            }
            for r in eq["rows"]
            for m, a in [_key(r)]
        ],
    }


def summarise(results: dict) -> None:
    """Per row: the median over the mlip runs and over the close-in-time equijax runs, their
    ratio mlip / equijax, and the ratio against the committed equijax reference JSON."""
    summary = []
    for row in results["rows"]:
        key = _key(row)
        mlip = [r["mlip_s"] for run in results["runs"] for r in run["rows"] if _key(r) == key]
        eq = [
            r["equijax_s"]
            for run in results.get("equijax_runs", [])
            for r in run["rows"]
            if _key(r) == key
        ]
        entry = {"mode": key[0], "atoms": key[1], "mlip_runs_s": mlip, "equijax_runs_s": eq}
        entry["mlip_s"] = float(np.median(mlip))
        if eq:
            entry["equijax_s"] = float(np.median(eq))
            entry["mlip_over_equijax"] = entry["mlip_s"] / entry["equijax_s"]
        ref = results.get("equijax_reference")
        for r in ref["rows"] if ref else []:
            if _key(r) == key:
                entry["reference_equijax_s"] = r["equijax_s"]
                entry["reference_mace_torch_s"] = r["mace_torch_s"]
                entry["mlip_over_reference_equijax"] = entry["mlip_s"] / r["equijax_s"]
        summary.append(entry)
    results["summary"] = summary


def render(results: dict) -> str:
    n_runs = len(results["runs"])
    n_eq = len(results.get("equijax_runs", []))
    lines = [
        f"{results['model']} ({results['hidden_irreps']}), each time the median of "
        f"{results['steps']} calls; columns: median over {n_runs} mlip run(s) and {n_eq} "
        "equijax run(s) made in alternation; 'ref' = the committed equijax JSON"
    ]
    head = ["mode", "atoms", "mlip s", "equijax s", "mlip/eq", "ref eq s", "mlip/ref", "torch s"]
    lines.append("{:<6} {:>6} {:>8} {:>10} {:>8} {:>9} {:>9} {:>8}".format(*head))

    def f(x, fmt):
        return format(x, fmt) if x is not None else "-"

    for e in results["summary"]:
        lines.append(
            "{:<6} {:>6} {:>8} {:>10} {:>8} {:>9} {:>9} {:>8}".format(
                e["mode"],
                e["atoms"],
                f(e["mlip_s"], ".3f"),
                f(e.get("equijax_s"), ".3f"),
                f(e.get("mlip_over_equijax"), ".2f"),
                f(e.get("reference_equijax_s"), ".3f"),
                f(e.get("mlip_over_reference_equijax"), ".2f"),
                f(e.get("reference_mace_torch_s"), ".3f"),
            )
        )
    for e in results["summary"]:
        runs = ", ".join(f"{t:.3f}" for t in e["mlip_runs_s"])
        eq = ", ".join(f"{t:.3f}" for t in e["equijax_runs_s"])
        lines.append(f"  {e['mode']} {e['atoms']}: mlip runs [{runs}], equijax runs [{eq}]")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="medium")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--md-atoms", type=int, nargs="*", default=[32, 108])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--modes", nargs="*", default=["md", "infer", "train"])
    ap.add_argument("--out", default=str(REPO / "experiments/mace/bench_mlip.json"))
    ap.add_argument(
        "--merge",
        action="append",
        default=[],
        metavar="MLIP_JSON",
        help="also pool the runs recorded in another output of this script",
    )
    ap.add_argument(
        "--compare",
        nargs=2,
        action="append",
        metavar=("LABEL", "EQUIJAX_JSON"),
        default=[],
        help="an `equijax bench mace` JSON made close in time (pooled, median over runs)",
    )
    ap.add_argument(
        "--reference",
        nargs=2,
        metavar=("LABEL", "EQUIJAX_JSON"),
        help="the committed `equijax bench mace` JSON (reported separately)",
    )
    ap.add_argument(
        "--embed",
        nargs=2,
        action="append",
        default=[],
        metavar=("LABEL", "MLIP_JSON"),
        help="keep another output's model, summary and equijax runs (e.g. the other size)",
    )
    ap.add_argument("--note", action="append", default=[], help="a line of notes for the JSON")
    ap.add_argument("--no-run", action="store_true", help="only redo the comparison on --out")
    args = ap.parse_args()
    out = Path(args.out)
    if args.no_run:
        results = json.loads(out.read_text())
    else:
        results = run(args.size, args.batch_size, args.md_atoms, args.steps, args.modes)
    for path in args.merge:
        for other in json.loads(Path(path).read_text())["runs"]:
            if other["started"] not in {r["started"] for r in results["runs"]}:
                results["runs"].append(other)
    results["runs"].sort(key=lambda r: r["started"])
    for label, path in args.compare:
        runs = [r for r in results.setdefault("equijax_runs", []) if r["label"] != label]
        results["equijax_runs"] = runs + [_equijax_run(results, label, path)]
    if args.reference:
        results["equijax_reference"] = _equijax_run(results, *args.reference)
    summarise(results)
    for label, path in args.embed:
        other = json.loads(Path(path).read_text())
        keep = ("model", "hidden_irreps", "n_params", "steps", "runs", "equijax_runs", "summary")
        results.setdefault("other_outputs", {})[label] = {k: other.get(k) for k in keep}
    if args.note:
        results["notes"] = results.get("notes", []) + args.note
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(render(results))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
