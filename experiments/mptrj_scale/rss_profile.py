"""Where a 2-step `equijax train` spends its memory: RSS split into anonymous and file-backed
pages (``/proc/self/smaps_rollup``) at each phase, and the expensive compilations.

    python experiments/mptrj_scale/rss_profile.py /tmp/ms/ds_16k NAME [overrides...]

Runs `equijax.training.loop.train` in this process (config ``chgnet_emt_small``,
``data.n_structures=0 train.max_steps=2``), sampling every 0.25 s, and marks the start and end
of setup and of each evaluation. Compilations are counted with `jax.monitoring`'s
``backend_compile_duration`` events; those over 1 s are the train and eval steps (the others are
the small jitted functions of parameter initialisation). Appends one record to ``results.json``.
"""

from __future__ import annotations

import json
import resource
import sys
import threading
import time
from pathlib import Path

import jax
import jax.monitoring

HERE = Path(__file__).resolve().parent


def _rollup() -> dict[str, float]:
    out = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) / 1e6
    return out


def main(source: str, name: str, *overrides: str) -> None:
    from equijax.training import loop
    from equijax.training.config import load_config

    t0 = time.perf_counter()
    samples, marks, compiles, stop = [], [], [], threading.Event()

    def now() -> float:
        return round(time.perf_counter() - t0, 1)

    def split() -> tuple[float, float, float]:
        r = _rollup()
        return round(r["Rss"], 3), round(r["Anonymous"], 3), round(r["Rss"] - r["Anonymous"], 3)

    def sample():
        while not stop.is_set():
            samples.append((now(), *split()))
            time.sleep(0.25)

    def mark(what: str) -> None:
        marks.append((what, now(), *split()))

    def on_event(event: str, duration: float, **_) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append((now(), round(duration, 2)))

    def wrapped(fn, what):
        def call(*args, **kwargs):
            mark(f"{what}-start")
            out = fn(*args, **kwargs)
            mark(f"{what}-end")
            return out

        return call

    jax.monitoring.register_event_duration_secs_listener(on_event)
    loop._setup = wrapped(loop._setup, "setup")
    loop._evaluate = wrapped(loop._evaluate, "evaluate")
    config = load_config(
        "chgnet_emt_small",
        [f"data.source={source}", "data.n_structures=0", "train.max_steps=2",
         "train.progress=false", f"train.run_dir=/tmp/mptrj_scale_runs/{name}", *overrides],
    )  # fmt: skip
    threading.Thread(target=sample, daemon=True).start()
    result = loop.train(config)
    mark("done")
    stop.set()
    peak = max(samples, key=lambda s: s[1])
    record = {
        "what": "rss-profile",
        "name": name,
        "source": source,
        "overrides": list(overrides),
        "wall_s": now(),
        "peak_rss_GB_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "peak_sample_t_rss_anon_file_GB": peak,
        "peak_anon_GB": max(s[2] for s in samples),
        "peak_file_backed_GB": max(s[3] for s in samples),
        "marks_t_rss_anon_file_GB": marks,
        "compiles_over_1s": [c for c in compiles if c[1] > 1.0],
        "compiles_total": len(compiles),
        "evaluated_structures": result.get("evaluated_structures"),
        "val": result["val"],
    }
    results_file = HERE / "results.json"
    results = json.loads(results_file.read_text())
    results.append(record)
    results_file.write_text(json.dumps(results, indent=1))
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:])
