"""`LabeledStructure`: one structure with its reference labels (energy, forces, stress, magmoms).

Units everywhere in `equijax.data`: eV, Å, eV/Å, GPa, μB. Stress uses CHGNet's sign, which is
ASE's sign: positive = tensile, σ = (1/V) ∂E/∂ε (so a compressed cell has negative stress).
A missing label is ``None``, never zeros.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import ase
import numpy as np


@dataclasses.dataclass
class LabeledStructure:
    """A structure and its reference labels; construction coerces arrays to float64 and validates.

    Attributes:
        id: unique structure id (used in every error message).
        atoms: positions (N, 3) Å, atomic numbers (N,), cell (3, 3) Å, pbc (3,). A calculator is
            neither needed nor used.
        energy: total energy, eV, or None.
        forces: (N, 3) eV/Å, or None.
        stress: (3, 3) GPa, CHGNet/ASE sign (positive = tensile), or None. Only defined when the
            cell is periodic in all three directions.
        magmoms: (N,) μB, or None.
        group: split group (an MD trajectory, an mp-id, ...); defaults to ``id``. Structures of one
            group always land in the same train/val/test split.
    """

    id: str
    atoms: ase.Atoms
    energy: float | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    magmoms: np.ndarray | None = None
    group: str | None = None

    def __post_init__(self) -> None:
        if self.group is None:
            self.group = self.id
        if self.energy is not None:
            if isinstance(self.energy, (str, bytes)) or np.ndim(self.energy) != 0:
                raise ValueError(
                    f"structure {self.id!r}: energy must be a scalar, got {self.energy!r:.80}"
                )
            self.energy = float(self.energy)
        for name in ("forces", "stress", "magmoms"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, _as_float_array(value, self.id, name))
        self.validate()

    @property
    def n_atoms(self) -> int:
        """Number of atoms N."""
        return len(self.atoms)

    def validate(self) -> None:
        """Raise `ValueError` naming ``id`` for any malformed field.

        Checks: non-empty string id and group, ``atoms`` is a non-empty `ase.Atoms` with finite
        positions and cell, finite energy, forces of shape (N, 3), stress of shape (3, 3) only on
        cells periodic in all three directions, magmoms of shape (N,), and no NaN/inf anywhere.
        """
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"structure id must be a non-empty string, got {self.id!r}")
        label = f"structure {self.id!r}"
        if not isinstance(self.group, str) or not self.group:
            raise ValueError(f"{label}: group must be a non-empty string, got {self.group!r}")
        if not isinstance(self.atoms, ase.Atoms):
            raise ValueError(f"{label}: atoms must be ase.Atoms, got {type(self.atoms).__name__}")
        n = len(self.atoms)
        if n == 0:
            raise ValueError(f"{label}: the structure has no atoms")
        if (self.atoms.numbers < 1).any():
            raise ValueError(
                f"{label}: atomic numbers must be >= 1, got "
                f"{sorted(set(self.atoms.numbers.tolist()))}"
            )
        _check_finite(self.atoms.positions, label, "positions")
        _check_finite(self.atoms.cell.array, label, "cell")
        if self.energy is not None and not np.isfinite(self.energy):
            raise ValueError(f"{label}: energy is {self.energy}")
        _check_array(self.forces, (n, 3), label, "forces")
        _check_array(self.stress, (3, 3), label, "stress")
        _check_array(self.magmoms, (n,), label, "magmoms")
        if self.stress is not None and not np.asarray(self.atoms.pbc).all():
            raise ValueError(
                f"{label}: has a stress label but pbc={self.atoms.pbc.tolist()}; "
                "stress is only defined for cells periodic in all three directions"
            )


def check_unique_ids(structures: Iterable[LabeledStructure]) -> None:
    """Raise `ValueError` listing (up to 10) ids that occur more than once."""
    seen: set[str] = set()
    duplicates: list[str] = []
    for structure in structures:
        if structure.id in seen and structure.id not in duplicates:
            duplicates.append(structure.id)
        seen.add(structure.id)
    if duplicates:
        raise ValueError(f"duplicate structure ids ({len(duplicates)}): {duplicates[:10]}")


def _as_float_array(value, structure_id: str, name: str) -> np.ndarray:
    try:
        return np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"structure {structure_id!r}: {name} is not a numeric array ({err})"
        ) from err


def _check_array(value: np.ndarray | None, shape: tuple[int, ...], label: str, name: str) -> None:
    if value is None:
        return
    if value.shape != shape:
        raise ValueError(f"{label}: {name} has shape {value.shape}, expected {shape}")
    _check_finite(value, label, name)


def _check_finite(value: np.ndarray, label: str, name: str) -> None:
    finite = np.isfinite(value)
    if not finite.all():
        where = np.argwhere(~finite)[:5].tolist()
        raise ValueError(f"{label}: {name} contains NaN or inf at indices {where}")
