"""Evaluate a trained run on one of its own splits, through `equijax.potential.Potential`.

``equijax evaluate RUN_DIR`` rebuilds the run's data and split from its ``config.json`` and
reports the mean absolute errors the training loop defines (energy per atom, force components,
stress components, magmom magnitudes), at the run's ``train.matmul_precision``. With
``forces="conservative"`` a model trained with direct heads is evaluated with its energy's
gradients as forces and stress instead (`load_trained`).

Two differences from the numbers a run records: the loop's validation and test loaders drop a
last partial batch, and its ``result.json`` holds the last evaluation, not the best checkpoint's.
So the two agree when the split is a multiple of the batch size and the best checkpoint is the
last one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from equijax.data import split_by_group
from equijax.nn.precision import matmul_precision
from equijax.potential import Potential
from equijax.training.data_source import load_structures
from equijax.training.run_dir import run_config
from equijax.training.trained import load_trained

SPLITS = ("train", "val", "test")
# (key, label, unit) of each reported error, in the order of `evaluate_run`'s result
ERRORS = (
    ("mae_energy", "energy", "eV/atom"),
    ("mae_forces", "forces", "eV/Å"),
    ("mae_stress", "stress", "GPa"),
    ("mae_magmoms", "magmoms", "μB"),
)


def run_split(run_dir: str | Path, split: str = "val") -> list:
    """The labelled structures of ``split`` ("train", "val" or "test") of a training run, as its
    training loop made them (same data config, fractions and seed)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    config = run_config(run_dir)
    structures = load_structures(config)
    parts = split_by_group(structures, tuple(config.data.fractions), seed=config.data.seed)
    return parts[SPLITS.index(split)]


def mean_absolute_errors(predictions: list[dict], structures: list) -> dict[str, float]:
    """MAEs of per-structure ``predictions`` (`Potential.predict_graphs` dicts) against the
    labels of ``structures``; a target no structure has a label for is left out. Magmoms are
    compared as magnitudes, as the model is trained."""
    errors: dict[str, list] = {key: [] for key, _, _ in ERRORS}
    for pred, item in zip(predictions, structures, strict=True):
        n = len(item.atoms)
        if item.energy is not None:
            errors["mae_energy"].append([pred["energy_per_atom"] - item.energy / n])
        if item.forces is not None:
            errors["mae_forces"].append((pred["forces"] - item.forces).ravel())
        if item.stress is not None:
            errors["mae_stress"].append((pred["stress"] - item.stress).ravel())
        if item.magmoms is not None:
            errors["mae_magmoms"].append(pred["magmoms"] - np.abs(item.magmoms))
    return {
        key: float(np.mean(np.abs(np.concatenate(values))))
        for key, values in errors.items()
        if values
    }


def evaluate_run(
    run_dir: str | Path,
    split: str = "val",
    which: str = "best",
    forces: str | None = None,
    batch_size: int = 16,
) -> dict[str, float]:
    """MAEs of a training run's ``which`` checkpoint ("best" or "latest", EMA params) on its
    ``split``: ``mae_energy`` eV/atom, ``mae_forces`` eV/Å, ``mae_stress`` GPa, ``mae_magmoms``
    μB, and ``n_structures``. ``forces``: None (as trained) or "conservative" (see module doc)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    module, params = load_trained(run_dir, which=which, forces=forces)
    config = run_config(run_dir)
    structures = run_split(run_dir, split)
    if not structures:
        raise ValueError(f"{run_dir}: the {split} split is empty")
    potential = Potential(module, params)  # at the model's own cutoffs, as it was trained
    # stress is zero for structures without a 3D cell; those have no stress label to compare
    with matmul_precision(config.train.matmul_precision):
        predictions = potential.predict([s.atoms for s in structures], batch_size=batch_size)
    return {**mean_absolute_errors(predictions, structures), "n_structures": len(structures)}


def format_errors(rows: dict[str, dict[str, float]]) -> str:
    """A markdown table of `evaluate_run` results, one row per label."""
    head = "| run | n | " + " | ".join(f"{label} ({unit})" for _, label, unit in ERRORS) + " |"
    lines = [head, "|" + "---|" * (len(ERRORS) + 2)]
    for name, result in rows.items():
        cells = [f"{result[key]:.4g}" if key in result else "" for key, _, _ in ERRORS]
        lines.append(f"| {name} | {result['n_structures']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
