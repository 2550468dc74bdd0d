"""`equijax bench tp`: tensor-product microbenchmark, every method on the same inputs in one run.

For each method and L: compile time, forward, forward+backward and backward-of-backward times
(median and interquartile range over repeats after warm-up, each call waited for on the device),
the compiled program's peak memory (XLA's buffer assignment: arguments + outputs + temporaries),
the paths realized, and achieved fractions of this machine's measured memory bandwidth and matmul
rate from analytic useful FLOPs and minimal bytes. Writes JSON and a log-scale plot.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from equijax.bench import tp_methods
from equijax.bench.common import Table, machine_info, write_json
from equijax.bench.memory import xla_memory

MODES = ("fwd", "fwdbwd", "bwdbwd")


def _loss(method, x1, x2):
    return jnp.sum(method.fn(*method.extra_inputs, x1, x2) ** 2)


def _programs(method) -> dict:
    """fwd: f(x1, x2); fwdbwd: ∇_(x1,x2) Σ f²; bwdbwd: ∇_x1 Σ (∇_x2 Σ f²)² (forces-style)."""
    fwd = lambda x1, x2: method.fn(*method.extra_inputs, x1, x2)
    fwdbwd = jax.grad(lambda x1, x2: _loss(method, x1, x2), argnums=(0, 1))
    inner = jax.grad(lambda x1, x2: _loss(method, x1, x2), argnums=1)
    bwdbwd = jax.grad(lambda x1, x2: jnp.sum(inner(x1, x2) ** 2), argnums=0)
    return {"fwd": fwd, "fwdbwd": fwdbwd, "bwdbwd": bwdbwd}


def _time(compiled, args, repeats: int) -> tuple[float, float]:
    for _ in range(2):
        jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    q1, median, q3 = np.percentile(times, [25, 50, 75])
    return 1e3 * float(median), 1e3 * float(q3 - q1)


def machine_rates(big: bool) -> dict:
    """Measured memory bandwidth (GB/s, a scaled copy) and float32 matmul rate (TFLOP/s)."""
    n = (1 << 26) if big else (1 << 23)
    x = jnp.ones((n,), jnp.float32)
    copy = jax.jit(lambda a: a * 1.5 + 1.0)
    ms, _ = _time(copy, (x,), 10)
    k = 8192 if big else 1024
    a = jnp.ones((k, k), jnp.float32)
    matmul = jax.jit(lambda p, q: p @ q)
    mm_ms, _ = _time(matmul, (a, a), 5)
    return {
        "bandwidth_gb_s": 2 * 4 * n / (ms * 1e-3) / 1e9,
        "matmul_tflop_s": 2 * k**3 / (mm_ms * 1e-3) / 1e12,
    }


def measure(
    name: str,
    lmax: int,
    batch: int,
    channels: int,
    repeats: int,
    modes,
    rates,
    outputs: dict | None = None,
) -> dict:
    """All numbers of one method at one L (errors are reported, not raised).

    The forward output (first 64 rows) goes to ``outputs[(name, L)]`` for `agreement`.
    """
    row = {"method": name, "L": lmax}
    try:
        method = tp_methods.build(name, lmax, channels, batch)
    except Exception as err:  # noqa: BLE001 - an unavailable comparator is a row, not a crash
        return row | {"error": f"{type(err).__name__}: {err}"[:300]}
    row["method"] = method.name
    row["paths"] = len(method.paths)
    row["odd_paths"] = sum(p.odd for p in method.paths)
    key1, key2 = jax.random.split(jax.random.PRNGKey(lmax))
    d = (lmax + 1) ** 2
    x1 = jax.random.normal(key1, (batch, channels * d), jnp.float32)
    x2 = jax.random.normal(key2, (batch, d), jnp.float32)
    programs = _programs(method)
    for mode in modes:
        try:
            t0 = time.perf_counter()
            compiled = jax.jit(programs[mode]).lower(x1, x2).compile()
            row[f"{mode}_compile_s"] = time.perf_counter() - t0
            row[f"{mode}_ms"], row[f"{mode}_iqr_ms"] = _time(compiled, (x1, x2), repeats)
            row[f"{mode}_peak_mb"] = (xla_memory(compiled) or {}).get("total")
            if mode == "fwd":
                result = np.asarray(compiled(x1, x2))
                row["out_dim"] = int(result.shape[-1])
                if outputs is not None:
                    outputs[(name, lmax)] = result[:64]
        except Exception as err:  # noqa: BLE001
            row[f"{mode}_error"] = f"{type(err).__name__}: {err}"[:300]
    if "fwd_ms" in row:
        seconds = row["fwd_ms"] * 1e-3
        flops = tp_methods.useful_flops(method.paths, batch, channels)
        nbytes = tp_methods.minimal_bytes(lmax, batch, channels, row["out_dim"])
        row["useful_gflop"] = flops / 1e9
        row["minimal_mb"] = nbytes / 2**20
        row["fraction_of_bandwidth"] = nbytes / seconds / (rates["bandwidth_gb_s"] * 1e9)
        row["fraction_of_matmul"] = flops / seconds / (rates["matmul_tflop_s"] * 1e12)
    return row


def _ratios(rows: list) -> list:
    """Speed-ups of equijax's products over the reference in the same run, per L and mode."""
    by = {(r["method"], r["L"]): r for r in rows}
    pairs = [
        ("gaunt_grid", "e3nn_s2grid"),
        ("gaunt_fourier", "e3nn_s2grid"),
        ("cg", "e3nn_cg"),
        ("cg", "cue_uniform_1d"),
        ("cg", "cue_naive"),
    ]
    out = []
    for ours, ref in pairs:
        for (name, lmax), row in sorted(by.items(), key=lambda kv: kv[0][1]):
            other = by.get((ref, lmax))
            if name != ours or other is None:
                continue
            entry = {"method": ours, "reference": ref, "L": lmax}
            for mode in MODES:
                if f"{mode}_ms" in row and f"{mode}_ms" in other:
                    entry[f"{mode}_speedup"] = other[f"{mode}_ms"] / row[f"{mode}_ms"]
            out.append(entry)
    return out


SAME_FUNCTION = (
    ("gaunt_grid", "e3nn_s2grid"),
    ("gaunt_grid:grid", "e3nn_s2grid"),
    ("gaunt_grid:operator", "e3nn_s2grid"),
    ("gaunt_grid:dense", "e3nn_s2grid"),
    ("gaunt_fourier", "e3nn_s2grid"),
    ("cg", "e3nn_cg"),
)


def agreement(outputs: dict) -> list:
    """Max |difference| / max |reference| between methods that compute the same function.

    ``outputs``: {(method, L): forward output on the benchmark inputs}, kept from the timed runs,
    so a speed-up is never reported for a different result.
    """
    out = []
    for ours, ref in SAME_FUNCTION:
        for (name, lmax), a in outputs.items():
            b = outputs.get((ref, lmax))
            if name != ours or b is None:
                continue
            rel = float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
            out.append(
                {"method": ours, "reference": ref, "L": lmax, "max_relative_difference": rel}
            )
    return out


def _fmt(value, digits=3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def plot(rows: list, path: str) -> None:
    """Log-scale time against L per method: forward and forward+backward side by side."""
    matplotlib.use("Agg")

    names = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, (mode, title) in zip(axes, (("fwd", "forward"), ("fwdbwd", "forward + backward"))):
        for i, name in enumerate(names):
            pts = [
                (r["L"], r[f"{mode}_ms"]) for r in rows if r["method"] == name and f"{mode}_ms" in r
            ]
            if pts:
                ls, ms = zip(*pts)
                style = "-o" if not name.startswith(("e3nn", "cue")) else "--s"
                ax.plot(ls, ms, style, color=f"C{i % 10}", label=name)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("L (inputs and outputs up to L)")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("time per call [ms]")
    handles = dict(zip(*reversed(axes[1].get_legend_handles_labels())))
    handles |= dict(zip(*reversed(axes[0].get_legend_handles_labels())))
    if handles:  # one entry per method, whichever panel has it
        axes[1].legend(
            list(handles.values()),
            list(handles),
            fontsize=8,
            loc="center left",
            bbox_to_anchor=(1.02, 0.5),
        )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


def run(
    lmaxes=None,
    batch=None,
    channels=None,
    methods=None,
    repeats=None,
    modes=MODES,
    out: str | None = "results/bench_tp.json",
    plot_path: str | None = "results/bench_tp.png",
    e3nn_cg_lmax: int = 4,
    cue_lmax: int | None = None,
) -> dict:
    """Run the benchmark; sizes default to the anchor workload on GPU and a small one on CPU.

    ``e3nn_cg_lmax`` / ``cue_lmax`` skip those comparators above that L (their compile times
    explode: e3nn's CG did not compile within 110 s at L=5 on an H100).
    """
    gpu = jax.default_backend() == "gpu"
    lmaxes = list(lmaxes or (range(1, 7) if gpu else range(1, 5)))
    batch = batch or (10000 if gpu else 1000)
    channels = channels or (32 if gpu else 16)
    repeats = repeats or (20 if gpu else 5)
    cue_lmax = cue_lmax if cue_lmax is not None else (6 if gpu else 2)
    if methods is None:
        methods = list(tp_methods.EQUIJAX_METHODS) + ["e3nn_cg", "e3nn_s2grid"]
        methods += ["cue"] if tp_methods.cue_available() else []
    info = machine_info()
    rates = machine_rates(big=gpu)
    print(
        f"machine: {info['summary']}; measured {rates['bandwidth_gb_s']:.0f} GB/s, "
        f"{rates['matmul_tflop_s']:.2f} TFLOP/s float32 matmul"
    )
    print(
        f"workload: N={batch}, C={channels}, x1 = C x [0e+1o+..+L], x2 = 1 x [0e+1o+..+L], "
        f"outputs l <= L; {repeats} repeats\n"
    )
    rows, outputs = [], {}
    for lmax in lmaxes:
        for name in methods:
            if (name == "e3nn_cg" and lmax > e3nn_cg_lmax) or (name == "cue" and lmax > cue_lmax):
                rows.append(
                    {"method": name, "L": lmax, "skipped": "above its L cap (compile time)"}
                )
                continue
            row = measure(name, lmax, batch, channels, repeats, modes, rates, outputs)
            rows.append(row)
            print(
                f"  L={lmax} {row['method']}: fwd {_fmt(row.get('fwd_ms'))} ms, "
                f"fwd+bwd {_fmt(row.get('fwdbwd_ms'))} ms, compile {_fmt(row.get('fwd_compile_s'))} s"
                + (f"  [{row['error']}]" if "error" in row else ""),
                flush=True,
            )
    table = Table(
        f"equijax bench tp ({info['summary']})",
        [
            "L",
            "method",
            "paths",
            "compile s",
            "fwd ms",
            "fwd+bwd ms",
            "bwd2 ms",
            "peak MB",
            "%BW",
            "%matmul",
        ],
    )

    def pct(row, key):
        return _fmt(100 * row[key], 2) if key in row else "-"

    for r in rows:
        table.add(
            r["L"],
            r["method"],
            r.get("paths", "-"),
            _fmt(r.get("fwd_compile_s")),
            _fmt(r.get("fwd_ms")),
            _fmt(r.get("fwdbwd_ms")),
            _fmt(r.get("bwdbwd_ms")),
            _fmt(r.get("fwd_peak_mb")),
            pct(r, "fraction_of_bandwidth"),
            pct(r, "fraction_of_matmul"),
        )
    print()
    table.print()
    ratios = _ratios(rows)
    for e in ratios:
        print(
            f"  L={e['L']} {e['method']} vs {e['reference']}: "
            + ", ".join(f"{m} {e[f'{m}_speedup']:.2f}x" for m in MODES if f"{m}_speedup" in e)
        )
    agreements = agreement(outputs)
    for e in agreements:
        print(
            f"  L={e['L']} {e['method']} equals {e['reference']} to "
            f"{e['max_relative_difference']:.1e} (relative)"
        )
    result = {
        "machine": info,
        "rates": rates,
        "agreement": agreements,
        "workload": {
            "batch": batch,
            "channels": channels,
            "lmax": lmaxes,
            "repeats": repeats,
            "dtype": "float32",
        },
        "rows": rows,
        "ratios": ratios,
    }
    write_json(result, out)
    if plot_path:
        plot(rows, plot_path)
    return result
