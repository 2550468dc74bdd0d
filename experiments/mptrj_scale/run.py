"""Issue 28's measurements: training data at MPtrj scale streamed from disk.

    python experiments/mptrj_scale/run.py make-xyz N OUT.extxyz     # EMT-labelled 32-atom cells
    python experiments/mptrj_scale/run.py make-json N OUT.json      # MPtrj layout, N frames
    python experiments/mptrj_scale/run.py build SOURCE OUT          # equijax data build, peak RSS
    python experiments/mptrj_scale/run.py train SOURCE NAME         # 2-step equijax train, peak RSS
    python experiments/mptrj_scale/run.py wait SOURCE               # data wait fraction, 30 steps

Each measurement appends one JSON record to ``results.json`` next to this script. Peak RSS is
``ru_maxrss`` of the measured command (`resource.getrusage(RUSAGE_CHILDREN)` after it exits, a
fresh Python process per command, GB = KB / 1e6) and, for ``build``, also the peak of the summed
RSS of the whole process tree (main process + workers) sampled every 0.2 s.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"
ELEMENTS = ["Cu", "Ni", "Al", "Ag", "Au", "Pt", "Pd"]


def _cells(n: int, seed: int):
    """``n`` EMT-labelled 32-atom fcc cells (random occupation, strain, rattle): LabeledStructures."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from equijax.data import EV_PER_A3_TO_GPA, LabeledStructure

    rng = np.random.default_rng(seed)
    base = bulk("Cu", "fcc", a=3.8, cubic=True).repeat(2)
    for i in range(n):
        atoms = base.copy()
        atoms.symbols = list(rng.choice(ELEMENTS, size=len(atoms)))
        strain = rng.uniform(-0.03, 0.03, (3, 3))
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + (strain + strain.T) / 2), scale_atoms=True)
        atoms.positions += rng.normal(scale=0.08, size=atoms.positions.shape)
        atoms.calc = EMT()
        yield LabeledStructure(
            id=f"emt{i:07d}",
            atoms=atoms.copy(),
            energy=atoms.get_potential_energy(),
            forces=atoms.get_forces(),
            stress=atoms.get_stress(voigt=False) * EV_PER_A3_TO_GPA,
            group=f"traj{i // 8:06d}",
        )


def make_xyz(n: int, out: str) -> None:
    """An extxyz of ``n`` EMT cells, written as generated (the issue's 32-atom EMT cells)."""
    import ase.io
    from tqdm import tqdm

    from equijax.data import to_ase_atoms

    with open(out, "w") as f:
        for s in tqdm(_cells(n, seed=0), total=n, desc="make-xyz"):
            ase.io.write(f, to_ase_atoms(s), format="extxyz")


def make_json(n: int, out: str, pool: int = 2000) -> None:
    """An MPtrj-layout JSON of ``n`` frames, 10 frames per mp-id, streamed to disk: a pool of
    ``pool`` EMT cells, each frame a copy rattled by 0.01 Å keeping the pool cell's labels (a
    cheap stand-in for real frames: the labels are not those of the rattled positions)."""
    from tqdm import tqdm

    from equijax.data import structure_dict_from_atoms
    from equijax.data.mptrj import KBAR_VASP_TO_GPA

    rng = np.random.default_rng(1)
    cells = list(_cells(pool, seed=1))
    with open(out, "w") as f:
        f.write("{")
        for i in tqdm(range(n), desc="make-json"):
            s = cells[i % pool]
            atoms = s.atoms.copy()
            atoms.positions += rng.normal(scale=0.01, size=atoms.positions.shape)
            mp_id, frame_id = f"mp-{i // 10}", f"{i // 10}-{i % 10}"
            frame = {
                "structure": structure_dict_from_atoms(atoms),
                "uncorrected_total_energy": s.energy,
                "corrected_total_energy": s.energy,
                "energy_per_atom": s.energy / len(atoms),
                "ef_per_atom": 0.0,
                "e_per_atom_relaxed": s.energy / len(atoms),
                "ef_per_atom_relaxed": 0.0,
                "force": s.forces.tolist(),
                "stress": (s.stress / KBAR_VASP_TO_GPA).tolist(),
                "magmom": None,
                "bandgap": 0.0,
                "mp_id": mp_id,
            }
            if i % 10 == 0:
                f.write(("" if i == 0 else "}, ") + json.dumps(mp_id) + ": {")
            else:
                f.write(", ")
            f.write(json.dumps(frame_id) + ": " + json.dumps(frame))
        f.write("}}" if n else "}")


def _measured(cmd: list[str]) -> dict:
    """Run ``cmd``; its wall time, ru_maxrss (GB) and the peak summed RSS of its process tree."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    peak, split, stop = [0], {"anon": 0.0, "file": 0.0}, threading.Event()

    def sample():
        root = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
                peak[0] = max(peak[0], sum(p.memory_info().rss for p in procs))
                rollup = _rollup_GB(proc.pid)
                split["anon"] = max(split["anon"], rollup["Anonymous"])
                split["file"] = max(split["file"], rollup["Rss"] - rollup["Anonymous"])
            except (psutil.Error, OSError, KeyError):
                pass
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    stop.set()
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{cmd} failed with exit status {proc.returncode}")
    return {
        "command": " ".join(cmd),
        "wall_s": round(wall, 1),
        # the largest ru_maxrss of any child waited for so far: one command per process
        "peak_rss_GB_maxrss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6,
        "peak_rss_GB_tree_sampled": peak[0] / 1e9,
        # the measured process alone, sampled: anonymous memory vs file-backed pages (mapped
        # files: shared libraries, and formerly the dataset's memory maps)
        "peak_anon_GB_sampled": split["anon"],
        "peak_file_backed_GB_sampled": split["file"],
        "stdout": out,
    }


def _rollup_GB(pid: int) -> dict[str, float]:
    """``/proc/PID/smaps_rollup`` in GB (Rss, Anonymous, ...)."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) / 1e6
    return out


def _record(entry: dict) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    results.append(entry)
    RESULTS.write_text(json.dumps(results, indent=1))
    print(json.dumps(entry, indent=1))


def build(source: str, out: str, workers: str = "2") -> None:
    """`equijax data build` of ``source`` with its wall time, peak RSS and disk size."""
    m = _measured(
        ["equijax", "data", "build", source, out, "--config", "chgnet_emt_small",
         "--workers", workers, "--no-progress"]
    )  # fmt: skip
    summary = json.loads(m.pop("stdout"))
    n, size = summary["structures"], summary["bytes"]
    _record(
        {
            "what": "build",
            "source": source,
            "source_GB": Path(source).stat().st_size / 1e9,
            "structures": n,
            "dataset_GB": size / 1e9,
            "GB_per_million_structures": size / 1e9 / n * 1e6,
            "structures_per_s": n / m["wall_s"],
            **m,
        }
    )


def train(source: str, name: str, *extra: str) -> None:
    """A 2-step `equijax train --config chgnet_emt_small` on ``source``: wall time, peak RSS."""
    import shutil

    shutil.rmtree(f"/tmp/mptrj_scale_runs/{name}", ignore_errors=True)  # a fresh run
    m = _measured(
        ["equijax", "train", "--config", "chgnet_emt_small", f"data.source={source}",
         "data.n_structures=0", "train.max_steps=2", "train.progress=false",
         f"train.run_dir=/tmp/mptrj_scale_runs/{name}", *extra]
    )  # fmt: skip
    out = m.pop("stdout")  # progress lines ("epoch 0: ..."), then the result's JSON
    result = json.loads(out[out.index("{\n") :])
    _record({"what": "train-2-steps", "name": name, "source": source, **m, "result": result})


def wait(source: str, steps: int | str = 30, warmup: int = 3) -> None:
    """Data wait fraction of the training loop's loader at the CPU step rate: ``steps`` train
    steps with the prefetching loader, timed after ``warmup`` (compiling) steps."""
    import jax

    steps = int(steps)

    from equijax.training.config import load_config
    from equijax.training.loop import _setup
    from equijax.training.step import shard_batch

    config = load_config(
        "chgnet_emt_small",
        [f"data.source={source}", "data.n_structures=0", "train.progress=false",
         "train.run_dir=/tmp/mptrj_scale_runs/wait"],
    )  # fmt: skip
    t0 = time.perf_counter()
    run = _setup(config, resume=False)  # start-up: open, split, first batch, init (no compile)
    setup_s = time.perf_counter() - t0
    loader, state = run.loaders["train"], run.state
    waits, step_s = [], []
    batches = loader.epoch(0)
    for k in range(steps + warmup):
        t0 = time.perf_counter()
        _, (graph, targets, _) = next(batches)
        t1 = time.perf_counter()
        state, m = run.train_step(
            state, shard_batch(run.mesh, graph), shard_batch(run.mesh, targets)
        )
        jax.block_until_ready(m["loss"])
        if k >= warmup:
            waits.append(t1 - t0)
            step_s.append(time.perf_counter() - t1)
    total = sum(waits) + sum(step_s)
    build_s = []  # building one batch in the consumer, no prefetch: the wait without overlap
    for k in range(20):
        t0 = time.perf_counter()
        loader.batch(1, k)
        build_s.append(time.perf_counter() - t0)
    _record(
        {
            "what": "data-wait",
            "source": source,
            "steps": steps,
            "setup_s": setup_s,
            "batch_size": config.data.batch_size,
            "step_s_median": float(np.median(step_s)),
            "wait_s_median": float(np.median(waits)),
            "data_wait_fraction": sum(waits) / total,
            "batch_build_s_median": float(np.median(build_s)),
            "batch_build_over_step": float(np.median(build_s) / np.median(step_s)),
        }
    )


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"make-xyz": lambda n, o: make_xyz(int(n), o), "make-json": lambda n, o: make_json(int(n), o),
     "build": build, "train": train, "wait": wait}[command](*args)  # fmt: skip
