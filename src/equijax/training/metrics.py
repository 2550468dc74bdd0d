"""Run logs: one JSON line per record in ``metrics.jsonl``, a CSV twin, and learning-curve PNGs."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt

from equijax.training.scalar_loggers import record_scalars


class MetricsLog:
    """Append-only metrics log of a run (``train``, ``val`` and ``test`` records)."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, loggers: Sequence = ()):
        """``enabled=False`` (processes other than 0 of a multi-host run) makes every write a
        no-op, so a shared run directory holds each record once. ``loggers``:
        `equijax.training.scalar_loggers.ScalarLogger` s that get every record's numbers too
        (TensorBoard, W&B)."""
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.enabled = enabled
        self.loggers = list(loggers) if enabled else []

    def write(self, record: dict) -> None:
        """Append one record (``split``, ``step`` and values) and pass its numbers on."""
        if not self.enabled:
            return
        for logger in self.loggers:
            logger.log(*record_scalars(record))
        with self.path.open("a") as f:
            f.write(
                json.dumps(
                    {
                        k: (
                            float(v)
                            if hasattr(v, "__float__") and not isinstance(v, (str, int))
                            else v
                        )
                        for k, v in record.items()
                    }
                )
                + "\n"
            )

    def attach(self, loggers: Sequence) -> None:
        """Pass every later record's numbers to ``loggers`` too (ignored when disabled)."""
        if self.enabled:
            self.loggers.extend(loggers)

    def close(self) -> None:
        """Flush and close the scalar loggers."""
        for logger in self.loggers:
            logger.close()
        self.loggers = []

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def truncate_after(self, step: int) -> None:
        if not self.enabled:
            return
        """Drop records written after ``step`` (a resumed run rewrites them)."""
        kept = [r for r in self.records() if r.get("step", 0) <= step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def write_csv(self) -> Path:
        records = self.records()
        keys = sorted({k for r in records for k in r})
        out = self.path.with_suffix(".csv")
        with out.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(records)
        return out

    def plot(self, baseline: dict | None = None) -> Path:
        """Training loss and validation MAEs against the step, as ``learning_curves.png``."""
        matplotlib.use("Agg")

        records = self.records()
        train = [r for r in records if r["split"] == "train"]
        val = [r for r in records if r["split"] == "val"]
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        axes[0].semilogy([r["step"] for r in train], [r["loss"] for r in train], lw=0.8)
        axes[0].set(title="training loss", xlabel="step")
        for ax, key, unit in ((axes[1], "mae_energy", "eV/atom"), (axes[2], "mae_forces", "eV/Å")):
            ax.semilogy([r["step"] for r in val], [r[key] for r in val], "o-", label="model (val)")
            if baseline and key in baseline:
                ax.axhline(
                    baseline[key], color="gray", ls="--", label="baseline (linear fit; zero forces)"
                )
            ax.set(title=f"validation {key[4:]} MAE ({unit})", xlabel="step")
            ax.legend()
        fig.tight_layout()
        out = self.path.with_name("learning_curves.png")
        fig.savefig(out, dpi=110)
        plt.close(fig)
        return out
