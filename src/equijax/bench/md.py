"""`equijax bench md`: ASE molecular dynamics with the pretrained CHGNet, equijax's calculator
against chgnet's own `CHGNetCalculator`, on the same rattled fcc Cu cells.

Each (cell, dynamics, calculator) runs in a fresh process, so its peak memory is its own and a
calculator that does not fit is a row ("did not fit"), not a crash. The process starts from the
same positions and Maxwell-Boltzmann velocities (300 K, seeded), runs ``warmup`` steps (the
compiles), then times ``steps`` steps of Velocity Verlet (NVE) or Langevin (NVT, 300 K), 2 fs
each, one by one. The rate compared is the steady one, 1 / the median step time: a long MD run's
rate, which a new bucket shape met in the timed steps (a compile of seconds, counted in
``compiles_in_timed_steps``) would otherwise dominate in a short bench. The overall rate
(``steps_per_s_overall``, compiles included) is kept in the JSON. Every step asks the calculator for forces and rebuilds the graphs, as an MD user's run
does (chgnet's calculator also computes stress and magmoms every call; equijax's computes what
ASE asks for). The
first step's energy of both calculators is compared, so a speed-up is never reported for a
different potential.
"""

from __future__ import annotations

import multiprocessing
import resource
import time
import traceback

import ase
import ase.build
import numpy as np

from equijax.bench.common import Table, machine_info, ratio, write_json

DYNAMICS = ("nve", "nvt")
CALCULATORS = ("equijax", "chgnet")


def cu_cell(n_atoms: int) -> ase.Atoms:
    """A rattled fcc Cu supercell of exactly ``n_atoms`` (a multiple of 4): the conventional
    cell repeated a x b x c times, the repeats as equal as the factorisation allows."""
    if n_atoms < 4 or n_atoms % 4:
        raise ValueError(f"a Cu cell needs a multiple of 4 atoms, got {n_atoms}")
    cells = n_atoms // 4
    best = (cells, 1, 1)
    for a in range(1, round(cells ** (1 / 3)) + 2):
        for b in range(a, round((cells / a) ** 0.5) + 2):
            if cells % (a * b) == 0:
                c = cells // (a * b)
                repeats = tuple(sorted((a, b, c)))
                if max(repeats) - min(repeats) < max(best) - min(best):
                    best = repeats
    atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True) * best
    atoms.rattle(0.05, seed=0)
    return atoms


def _calculator(name: str):
    if name == "equijax":
        from equijax.calculators import EquijaxCalculator

        return EquijaxCalculator.from_pretrained("0.3.0")
    # reference extra: imported only when the reference runs
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    return CHGNetCalculator(CHGNet.load(model_name="0.3.0", verbose=False), use_device="cpu")


def _dynamics(kind: str, atoms, timestep_fs: float):
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.verlet import VelocityVerlet

    if kind == "nve":
        return VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    return Langevin(
        atoms,
        timestep=timestep_fs * units.fs,
        temperature_K=300,
        friction=0.01,
        rng=np.random.default_rng(1),
    )


_MIN_MEDIAN_MAX = (np.min, np.median, np.max)


def _compiled_shapes(calc) -> int:
    """How many (shape, stress, mode) executables equijax's calculator has compiled; 0 for
    chgnet's, which compiles nothing."""
    potential = getattr(calc, "potential", None)
    return len(potential.compiled_shapes) if potential is not None else 0


def _run_one(name: str, n_atoms: int, kind: str, steps: int, warmup: int, limit_gb: float, queue):
    """One measurement in this (child) process; puts a result dict on ``queue``."""
    try:
        if limit_gb > 0:
            limit = int(limit_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

        atoms = cu_cell(n_atoms)
        MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
        atoms.calc = _calculator(name)
        first_energy = float(atoms.get_potential_energy())
        atoms.get_stress()
        dyn = _dynamics(kind, atoms, 2.0)
        dyn.run(warmup)
        shapes_before = _compiled_shapes(atoms.calc)
        stamps = [time.perf_counter()]
        dyn.attach(lambda: stamps.append(time.perf_counter()), interval=1)
        dyn.run(steps)
        step_s = np.diff(stamps)[-steps:]  # the observer also runs once before the first step
        seconds = stamps[-1] - stamps[0]
        new_shapes = _compiled_shapes(atoms.calc) - shapes_before
        queue.put(
            {
                "steps_per_s": 1.0 / float(np.median(step_s)),
                "steps_per_s_overall": steps / seconds,
                "step_ms_min_median_max": [1e3 * float(f(step_s)) for f in _MIN_MEDIAN_MAX],
                "compiles_in_timed_steps": new_shapes,
                "first_energy_eV": first_energy,
                "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,  # kB -> GB
            }
        )
    except MemoryError:
        queue.put({"error": "did not fit (MemoryError)"})
    except Exception as err:  # noqa: BLE001 - a failed reference is a row, not a crash
        queue.put({"error": f"{type(err).__name__}: {err}"[:300], "trace": traceback.format_exc()})


def measure(name: str, n_atoms: int, kind: str, steps: int, warmup: int, limit_gb: float) -> dict:
    """Run `_run_one` in a fresh process; a killed process (out of memory) is an error row."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run_one, args=(name, n_atoms, kind, steps, warmup, limit_gb, queue))
    proc.start()
    proc.join()
    if not queue.empty():
        return queue.get()
    return {"error": f"did not fit (process ended with exit code {proc.exitcode})"}


def run(
    sizes=(64, 512, 4000),
    dynamics=DYNAMICS,
    steps: int = 20,
    warmup: int = 2,
    reference: bool = True,
    reference_max_atoms: int = 2048,
    limit_gb: float = 0.0,
    out: str | None = "results/bench_md.json",
) -> dict:
    """Time ASE MD with both calculators; prints a table, writes JSON, returns the results.

    ``reference_max_atoms``: larger cells skip chgnet (it needs 16 GB at 864 atoms); ``limit_gb``:
    an address-space limit per process (0: none), so a run that would exhaust memory fails alone.
    """
    info = machine_info()
    rows = []
    for n in sizes:
        cell = cu_cell(n)
        for kind in dynamics:
            row = {"atoms": len(cell), "dynamics": kind, "steps": steps}
            for name in CALCULATORS:
                if name == "chgnet" and (not reference or len(cell) > reference_max_atoms):
                    row[name] = {"error": "not run (above reference_max_atoms)"}
                    continue
                row[name] = measure(name, len(cell), kind, steps, warmup, limit_gb)
                print(f"  Cu{len(cell)} {kind} {name}: {_cell(row[name])}", flush=True)
            rows.append(row)
    table = Table(
        f"equijax bench md ({info['summary']})",
        [
            "atoms",
            "dynamics",
            "equijax steps/s",
            "chgnet steps/s",
            "speed-up",
            "equijax compiles in timed steps",
            "peak GB (ours / ref)",
            "first E agree (eV/atom)",
        ],
    )
    for row in rows:
        ours, ref = row["equijax"], row["chgnet"]
        agree = "-"
        if "first_energy_eV" in ours and "first_energy_eV" in ref:
            diff = abs(ours["first_energy_eV"] - ref["first_energy_eV"]) / row["atoms"]
            row["first_energy_difference_eV_per_atom"] = diff
            agree = f"{diff:.1e}"
        speed = (
            ratio(ours["steps_per_s"], ref["steps_per_s"])
            if "steps_per_s" in ours and "steps_per_s" in ref
            else "-"
        )
        table.add(
            row["atoms"],
            row["dynamics"],
            _cell(ours),
            _cell(ref),
            speed,
            ours.get("compiles_in_timed_steps", "-"),
            f"{ours.get('peak_rss_gb', float('nan')):.2f} / {ref.get('peak_rss_gb', float('nan')):.2f}",
            agree,
        )
    table.print()
    result = {
        "benchmark": "md",
        "machine": info,
        "steps": steps,
        "warmup": warmup,
        "rate": "steady: 1 / median step time (steps_per_s_overall includes compiles)",
        "rows": rows,
    }
    write_json(result, out)
    return result


def _cell(r: dict) -> str:
    return f"{r['steps_per_s']:.3g}" if "steps_per_s" in r else r.get("error", "-")[:40]
