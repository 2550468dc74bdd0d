"""Collect a sweep's points into one table (CSV and Markdown) and comparison plots."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt

TRAIN_COLUMNS = (
    "num_params",
    "steps",
    "structures_per_s",
    "val_mae_energy",
    "val_mae_forces",
    "val_mae_stress",
    "val_mae_magmoms",
    "test_mae_energy",
    "test_mae_forces",
    "test_mae_stress",
    "test_mae_magmoms",
    "wall_s",
)
TRAIN_PANELS = (
    ("val MAE energy (eV/atom)", ("val_mae_energy",)),
    ("val MAE forces (eV/Å)", ("val_mae_forces",)),
    ("val MAE stress (GPa)", ("val_mae_stress",)),
    ("training structures/s", ("structures_per_s",)),
)


def load_points(sweep_dir: str | Path) -> list[dict]:
    """One record per point directory (``point.json`` + ``metrics.json`` if finished), in the
    order of ``sweep.json`` when present."""
    sweep_dir = Path(sweep_dir)
    order_path = sweep_dir / "sweep.json"
    names = json.loads(order_path.read_text())["points"] if order_path.exists() else []
    found = sorted(p.parent.name for p in sweep_dir.glob("*/point.json"))
    names += [n for n in found if n not in names]
    records = []
    for name in names:
        point_dir = sweep_dir / name
        if not (point_dir / "point.json").exists():
            continue
        info = json.loads((point_dir / "point.json").read_text())
        metrics_path = point_dir / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
        records.append(
            {
                "point": name,
                "axes": info.get("axes", {}),
                "task": info.get("task"),
                "status": "done" if metrics else info.get("status", "?"),
                "metrics": metrics,
            }
        )
    return records


def table_rows(records: list[dict]) -> tuple[list[str], list[dict]]:
    """``(columns, rows)``: point, its axis values, status, then metrics (training's main ones
    first, the rest sorted)."""
    axes = list(dict.fromkeys(k for r in records for k in r["axes"]))
    metric_keys = set().union(*[r["metrics"] for r in records]) if records else set()
    first = [k for k in TRAIN_COLUMNS if k in metric_keys]
    rest = sorted(k for k in metric_keys - set(first) if not k.startswith("baseline_"))
    rest += sorted(k for k in metric_keys if k.startswith("baseline_"))
    columns = ["point", *axes, "status", *first, *rest]
    rows = [
        {"point": r["point"], **r["axes"], "status": r["status"], **r["metrics"]} for r in records
    ]
    return columns, rows


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(columns: list[str], rows: list[dict]) -> str:
    """A GitHub-flavoured Markdown table (numbers to 4 significant digits)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _is_number(text) -> bool:
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False


def _panels(records: list[dict], columns: list[str]) -> list[tuple[str, list[str]]]:
    if any(r["task"] == "bench-tp" for r in records):
        return [
            (f"{mode} time (ms)", [c for c in columns if c.endswith(f"_{mode}_ms")])
            for mode in ("fwd", "fwdbwd", "bwdbwd")
            if any(c.endswith(f"_{mode}_ms") for c in columns)
        ]
    return [(title, list(keys)) for title, keys in TRAIN_PANELS if keys[0] in columns]


def plot_results(
    records: list[dict], columns: list[str], rows: list[dict], path: str | Path
) -> None:
    """Comparison plots: one panel per main metric. With a numeric axis, lines against it (one
    per combination of the other axes and metric); otherwise bars, one per point."""
    matplotlib.use("Agg")

    done = [row for row in rows if row["status"] == "done"]
    panels = _panels(records, columns)
    if not done or not panels:
        return
    axes = [c for c in columns[1 : columns.index("status")]]
    numeric = [
        a
        for a in axes
        if all(_is_number(r.get(a)) for r in done) and len({r.get(a) for r in done}) > 1
    ]
    x_axis = numeric[0] if numeric else None
    fig, plots = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (title, keys) in zip(plots[0], panels):
        if x_axis is None:
            labels = [r["point"] for r in done]
            for i, key in enumerate(keys):
                values = [r.get(key, float("nan")) for r in done]
                ax.bar(
                    [j + i / (len(keys) + 1) for j in range(len(done))],
                    values,
                    width=1 / (len(keys) + 1),
                    label=key if len(keys) > 1 else None,
                )
            ax.set_xticks(range(len(done)), labels, rotation=45, ha="right", fontsize=7)
        else:
            others = [a for a in axes if a != x_axis and len({r.get(a) for r in done}) > 1]
            groups = sorted({tuple(r.get(a) for a in others) for r in done})
            for group, key in itertools.product(groups, keys):
                sel = sorted(
                    (
                        r
                        for r in done
                        if tuple(r.get(a) for a in others) == group and r.get(key) is not None
                    ),
                    key=lambda r: float(r[x_axis]),
                )
                label = ", ".join(
                    [
                        *(f"{a.split('.')[-1]}={v}" for a, v in zip(others, group)),
                        *([key] if len(keys) > 1 else []),
                    ]
                )
                ax.plot(
                    [float(r[x_axis]) for r in sel],
                    [r[key] for r in sel],
                    "o-",
                    label=label or None,
                )
            ax.set_xlabel(x_axis)
            if "ms" in title:
                ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def collect(sweep_dir: str | Path, plot: bool = True) -> dict:
    """Write ``results.csv``, ``results.md`` and ``results.png`` in ``sweep_dir``; returns
    ``{"columns", "rows", "paths"}``."""
    sweep_dir = Path(sweep_dir)
    records = load_points(sweep_dir)
    if not records:
        raise FileNotFoundError(f"{sweep_dir}: no sweep points (no */point.json)")
    columns, rows = table_rows(records)
    with (sweep_dir / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (sweep_dir / "results.md").write_text(markdown_table(columns, rows))
    paths = {"csv": sweep_dir / "results.csv", "markdown": sweep_dir / "results.md"}
    if plot:
        plot_results(records, columns, rows, sweep_dir / "results.png")
        if (sweep_dir / "results.png").exists():
            paths["plot"] = sweep_dir / "results.png"
    return {"columns": columns, "rows": rows, "paths": paths}
