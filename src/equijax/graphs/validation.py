"""Checks on `ase.Atoms` before a graph is built: every bad input raises a `ValueError` that names
the structure and the problem, never a silent NaN further down."""

from __future__ import annotations

import ase
import numpy as np

MAX_ATOMIC_NUMBER = 94  # CHGNet's embedding covers H..Pu
MIN_CELL_VOLUME_FRACTION = 1e-8  # |det| / (|a||b||c|) below this is a singular cell
COINCIDENT_DISTANCE = 1e-4  # Å: two atoms (or images) closer than this sit "at the same position"


class StructureLabel:
    """A structure's name for error messages, computed only when printed (formulas are slow)."""

    def __init__(self, atoms: ase.Atoms, index: int | None = None):
        self.atoms, self.index = atoms, index

    def __str__(self) -> str:
        return structure_label(self.atoms, self.index)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def structure_label(atoms: ase.Atoms, index: int | None = None) -> str:
    """A short human-readable name for error messages: id from ``atoms.info`` and formula."""
    if not isinstance(atoms, ase.Atoms):
        return f"input{'' if index is None else f' #{index}'} of type {type(atoms).__name__}"
    ident = None
    for key in ("id", "name", "mp_id", "material_id", "structure_id"):
        if key in atoms.info:
            ident = atoms.info[key]
            break
    parts = []
    if index is not None:
        parts.append(f"#{index}")
    if ident is not None:
        parts.append(repr(str(ident)))
    formula = atoms.get_chemical_formula() if len(atoms) else "empty"
    parts.append(f"({formula})")
    return "structure " + " ".join(parts)


def validate_atoms(atoms: ase.Atoms, label: str | StructureLabel) -> None:
    """Raise `ValueError` for inputs no graph can be built from.

    Checks: empty structure, atomic numbers outside 1..94, non-finite positions or cell, and a
    singular cell along periodic directions. Coincident atoms and isolated atoms are detected
    later, from the neighbour list.
    """
    if not isinstance(atoms, ase.Atoms):
        raise TypeError(f"{label}: expected ase.Atoms, got {type(atoms).__name__}")
    if len(atoms) == 0:
        raise ValueError(f"{label}: the structure has no atoms")
    numbers = atoms.numbers
    bad = (numbers < 1) | (numbers > MAX_ATOMIC_NUMBER)
    if bad.any():
        raise ValueError(
            f"{label}: atomic numbers {sorted(set(numbers[bad].tolist()))} at atom indices "
            f"{np.flatnonzero(bad)[:10].tolist()} are outside the supported range 1..{MAX_ATOMIC_NUMBER}"
        )
    positions = atoms.positions
    finite = np.isfinite(positions).all(axis=1)
    if not finite.all():
        raise ValueError(
            f"{label}: positions of atoms {np.flatnonzero(~finite)[:10].tolist()} are NaN or inf"
        )
    cell = atoms.cell.array
    if not np.isfinite(cell).all():
        raise ValueError(f"{label}: the cell contains NaN or inf")
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any():
        lengths = np.linalg.norm(cell, axis=1)
        if (lengths[pbc] <= 0).any():
            raise ValueError(
                f"{label}: periodic along axes {np.flatnonzero(pbc).tolist()} but cell vectors "
                f"{np.flatnonzero(pbc & (lengths <= 0)).tolist()} are zero"
            )
        if pbc.all():
            scale = float(np.prod(lengths))
            if abs(np.linalg.det(cell)) <= MIN_CELL_VOLUME_FRACTION * scale:
                raise ValueError(
                    f"{label}: the cell is singular (volume {atoms.cell.volume:.3g} Å³)"
                )
        else:
            periodic = cell[pbc]
            gram = periodic @ periodic.T
            scale = float(np.prod(np.diag(gram)))
            if np.linalg.det(gram) <= MIN_CELL_VOLUME_FRACTION**2 * scale:
                raise ValueError(f"{label}: the periodic cell vectors are linearly dependent")


def check_neighbors(
    label: str | StructureLabel,
    n_atoms: int,
    centers: np.ndarray,
    distances: np.ndarray,
    cutoff: float,
) -> None:
    """Raise `ValueError` for coincident atoms or atoms without a neighbour within ``cutoff``.

    ``centers``/``distances`` describe a full (directed) neighbour list.
    """
    close = distances < COINCIDENT_DISTANCE
    if close.any():
        k = int(np.flatnonzero(close)[0])
        raise ValueError(
            f"{label}: atom {int(centers[k])} and a neighbour (or its periodic image) are at the "
            f"same position (distance {distances[k]:.2e} Å)"
        )
    has_neighbor = np.zeros(n_atoms, dtype=bool)
    has_neighbor[centers] = True
    if not has_neighbor.all():
        isolated = np.flatnonzero(~has_neighbor)
        raise IsolatedAtomError(
            f"{label}: {isolated.size} isolated atom(s) {isolated[:10].tolist()} without any "
            f"neighbour within the cutoff of {cutoff} Å",
            isolated=isolated,
        )


class IsolatedAtomError(ValueError):
    """A structure has an atom with no neighbour within the cutoff (`ValueError` subclass)."""

    def __init__(self, message: str, isolated: np.ndarray):
        super().__init__(message)
        self.isolated = isolated
