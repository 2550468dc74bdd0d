"""The summary chart of the Benchmarks page: equijax's ratio against each reference, one
horizontal bar per charted row, grouped by benchmark, on a log scale with a line at 1x."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the headless backend

COLORS = {"speed": "C0", "memory": "C2", "accuracy": "C4"}


def chart_rows(items) -> list[tuple[str, str, float, str]]:
    """(benchmark, label, ratio, kind) for every row the chart shows, in page order."""
    out = []
    for item in items:
        for r in item.rows:
            if r.chart and r.ratio is not None:
                label = f"{item.bench.short}: {r.what} vs {r.against}"
                out.append((item.bench.short, label, r.ratio, r.kind))
    return out


def plot_ratios(items, path: Path) -> None:
    """Write the chart of ``items`` (`equijax.bench.report.Loaded`) to ``path`` (PNG)."""
    rows = chart_rows(items)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = max(len(rows), 1)
    fig, ax = plt.subplots(figsize=(12, 0.24 * n + 1.4))
    ys = list(range(n))[::-1]
    for y, (_, _, ratio, kind) in zip(ys, rows, strict=False):
        ax.barh(y, ratio - 1.0, left=1.0, color=COLORS.get(kind, "C7"), height=0.7)
        right = ratio >= 1
        x = ratio * 1.04 if right else ratio / 1.04
        ax.text(x, y, f"{ratio:.2f}x", va="center", ha="left" if right else "right", fontsize=6.5)
    ax.set_yticks(ys, [label for _, label, _, _ in rows], fontsize=6.5)
    ax.set_xscale("log")
    ratios = [r for _, _, r, _ in rows] or [1.0]
    lo, hi = min(0.8, min(ratios) / 1.6), max(ratios) * 1.6
    ax.set_xlim(lo, hi)
    ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500) if lo <= t <= hi]
    ax.set_xticks(ticks, [f"{t:g}x" for t in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.axvline(1.0, color="k", lw=0.8)
    for i in range(1, len(rows)):  # a rule between benchmarks
        if rows[i][0] != rows[i - 1][0]:
            ax.axhline(ys[i] + 0.5, color="0.7", lw=0.5)
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=c)
        for k, c in COLORS.items()
        if any(kind == k for *_, kind in rows)
    ]
    names = [k for k in COLORS if any(kind == k for *_, kind in rows)]
    ax.legend(handles, names, fontsize=7, loc="lower right")
    ax.set_xlabel("equijax's advantage over the reference (log scale; > 1x: faster or smaller)")
    ax.set_title("equijax against each reference, from the committed bench JSONs", fontsize=9)
    ax.set_ylim(-0.6, n - 0.4)
    ax.grid(axis="x", alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
