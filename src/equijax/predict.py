"""`equijax predict`: per-structure energy, forces, stress and magnetic moments for structure files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import ase.io
import numpy as np

from equijax.potential import Potential
from equijax.table import Table


def read_structures(files: list[str]) -> list[tuple[str, int, object]]:
    """Every frame of every file as ``(file, frame index, ase.Atoms)``; unreadable files raise
    `ValueError` naming the file."""
    out = []
    for name in files:
        if not Path(name).exists():
            raise ValueError(f"{name}: no such file")
        try:
            frames = ase.io.read(name, index=":")
        except Exception as err:  # noqa: BLE001 - ase raises many types for unreadable files
            raise ValueError(
                f"{name}: cannot read structures ({type(err).__name__}: {err})"
            ) from err
        out.extend((name, i, atoms) for i, atoms in enumerate(frames))
    return out


def predict_files(
    files: list[str],
    model: str = "chgnet-0.3.0",
    output_format: str = "table",
    out: str | None = None,
    batch_size: int = 40,
) -> list[dict]:
    """Predict every structure in ``files`` with the pretrained model ``model`` (a name of
    `equijax.models.registry.available_pretrained`; ``"0.3.0"`` works too) and write a
    table or JSON (energies eV and eV/atom, forces eV/Å, stress GPa, magmoms μB)."""
    entries = read_structures(files)
    potential = Potential.from_pretrained(model)
    graphs = []
    for name, index, atoms in entries:
        try:
            graphs.extend(potential.graphs([atoms]))
        except ValueError as err:  # name the file and frame, not only the structure
            raise ValueError(f"{name}, frame {index}: {err}") from err
    predictions = potential.predict_graphs(graphs, batch_size=batch_size)
    records = []
    for (name, index, atoms), pred in zip(entries, predictions):
        record = {
            "file": name,
            "frame": index,
            "formula": atoms.get_chemical_formula(),
            "n_atoms": len(atoms),
            "energy_eV": pred["energy"],
            "energy_per_atom_eV": pred["energy_per_atom"],
            "forces_eV_per_A": pred["forces"].tolist(),
            "magmoms_muB": pred["magmoms"].tolist(),
        }
        if "stress" in pred:
            record["stress_GPa"] = np.asarray(pred["stress"]).tolist()
        records.append(record)
    if output_format == "json":
        text = json.dumps(records, indent=1)
    else:
        table = Table(
            f"{model} predictions",
            [
                "file:frame",
                "formula",
                "atoms",
                "E (eV/atom)",
                "E (eV)",
                "max|F| (eV/Å)",
                "P (GPa)",
                "mean|m| (μB)",
            ],
        )
        for r in records:
            forces = np.asarray(r["forces_eV_per_A"])
            pressure = -np.trace(np.asarray(r["stress_GPa"])) / 3 if "stress_GPa" in r else None
            table.add(
                f"{r['file']}:{r['frame']}",
                r["formula"],
                r["n_atoms"],
                f"{r['energy_per_atom_eV']:.5f}",
                f"{r['energy_eV']:.4f}",
                f"{np.linalg.norm(forces, axis=1).max():.4f}",
                "-" if pressure is None else f"{pressure:.3f}",
                f"{np.mean(np.abs(r['magmoms_muB'])):.3f}",
            )
        text = table.render()
    if out:
        Path(out).write_text(text + "\n")
    else:
        sys.stdout.write(text + "\n")
    return records
