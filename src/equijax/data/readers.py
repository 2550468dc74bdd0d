"""Read and write `LabeledStructure`s through ASE: any `ase.io` format, extxyz, and `ase.db`.

Labels come only from an attached calculator's results (ASE's SinglePointCalculator when read from
a file); a label the calculator does not provide is ``None``, never zeros. ASE stores stress as a
Voigt 6-vector in eV/Å³ with the same sign as CHGNet, so the conversion is a unit factor only.

The MPtrj JSON reader/writer live in `equijax.data.mptrj` and are re-exported here.
"""

from __future__ import annotations

import os
from pathlib import Path

import ase
import ase.db
import ase.io
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io.formats import string2index
from ase.stress import full_3x3_to_voigt_6_stress

from equijax.data.mptrj import MPtrjReadResult, read_mptrj_json, write_mptrj_json
from equijax.data.structures import LabeledStructure, check_unique_ids
from equijax.units import EV_PER_A3_TO_GPA

__all__ = [
    "MPtrjReadResult",
    "from_ase_atoms",
    "read_ase",
    "read_ase_db",
    "read_mptrj_json",
    "to_ase_atoms",
    "write_ase_db",
    "write_extxyz",
    "write_mptrj_json",
]

_ID_KEYS = ("id", "group")  # atoms.info keys that hold LabeledStructure fields
_DB_ID_KEY = "structure_id"  # "id" is reserved by ase.db, so ids live under this key


def from_ase_atoms(
    atoms: ase.Atoms, structure_id: str, group: str | None = None
) -> LabeledStructure:
    """A `LabeledStructure` from ``atoms`` and the results of its attached calculator (if any).

    Energy (eV) via ``get_potential_energy()``, forces (N, 3) eV/Å, stress ASE Voigt eV/Å³ ->
    (3, 3) GPa (× 160.21766208, symmetric), magmoms (N,) μB via ``get_magnetic_moments()``; each
    only if present in ``atoms.calc.results``, else None. Constraints are not applied (raw labels).
    ``initial_magmoms`` are an input, not a label, and stay on the atoms. The returned atoms are
    a copy without calculator and without the ``"id"``/``"group"`` info keys.
    """
    calc = atoms.calc
    results = getattr(calc, "results", None) or {}
    energy = forces = stress = magmoms = None
    if "energy" in results:
        energy = atoms.get_potential_energy()
    if "forces" in results:
        forces = atoms.get_forces(apply_constraint=False)
    if "stress" in results:
        stress = atoms.get_stress(voigt=False, apply_constraint=False) * EV_PER_A3_TO_GPA
    if "magmoms" in results:
        magmoms = atoms.get_magnetic_moments()
    clean = atoms.copy()  # copies arrays, info, constraints; never the calculator
    for key in _ID_KEYS:
        clean.info.pop(key, None)
    return LabeledStructure(
        id=str(structure_id),
        atoms=clean,
        energy=energy,
        forces=forces,
        stress=stress,
        magmoms=magmoms,
        group=group,
    )


def to_ase_atoms(structure: LabeledStructure) -> ase.Atoms:
    """A copy of ``structure.atoms`` carrying its labels in a SinglePointCalculator (ASE units).

    Stress goes back to an ASE Voigt 6-vector in eV/Å³ (÷ 160.21766208, symmetrised). The id is
    stored in ``info["id"]`` and, when it differs from the id, the group in ``info["group"]``.
    """
    atoms = structure.atoms.copy()
    atoms.info["id"] = structure.id
    if structure.group != structure.id:
        atoms.info["group"] = structure.group
    results = {}
    if structure.energy is not None:
        results["energy"] = structure.energy
    if structure.forces is not None:
        results["forces"] = structure.forces.copy()
    if structure.stress is not None:
        results["stress"] = full_3x3_to_voigt_6_stress(structure.stress / EV_PER_A3_TO_GPA)
    if structure.magmoms is not None:
        results["magmoms"] = structure.magmoms.copy()
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def read_ase(
    path: str | os.PathLike, index: int | str | slice = ":", format: str | None = None
) -> list[LabeledStructure]:  # noqa: A002 (ase's name)
    """Read structures and labels from any `ase.io` format (extxyz, traj, OUTCAR, ...).

    Args:
        path: file to read.
        index: frames to keep, as in `ase.io.read` (``":"``, ``-1``, ``"2:5"``, a slice or an int).
        format: `ase.io` format name; guessed from the file when None.

    Returns:
        One `LabeledStructure` per selected frame. id = ``atoms.info["id"]`` if present, else
        ``f"{path.stem}:{i}"`` with ``i`` the frame's position in the whole file; group =
        ``atoms.info["group"]`` if present, else the id. Labels as in `from_ase_atoms`.

    Raises:
        ValueError: naming the id, for malformed labels or duplicate ids.
    """
    path = Path(path)
    frames = ase.io.read(path, index=":", format=format)  # all frames, so ids are file positions
    if isinstance(index, str):
        index = string2index(index)
    numbered = list(enumerate(frames))
    chosen = numbered[index] if isinstance(index, slice) else [numbered[index]]
    structures = []
    for i, atoms in chosen:
        structure_id = atoms.info.get("id", f"{path.stem}:{i}")
        group = atoms.info.get("group")
        structures.append(
            from_ase_atoms(atoms, str(structure_id), None if group is None else str(group))
        )
    check_unique_ids(structures)
    return structures


def write_extxyz(structures: list[LabeledStructure], path: str | os.PathLike) -> None:
    """Write ``structures`` (with labels, ids and groups) to an extended-XYZ file, overwriting it.

    `read_ase` reads it back: ids, groups, cell, pbc, energy and stress exactly (ASE writes
    per-frame values at full precision, stress to within an ulp of the unit conversion); positions,
    forces and magmoms to 5e-9 (ASE writes per-atom columns with 8 decimals).
    """
    check_unique_ids(structures)
    ase.io.write(Path(path), [to_ase_atoms(s) for s in structures], format="extxyz")


def read_ase_db(path: str | os.PathLike) -> list[LabeledStructure]:
    """Read every row of an `ase.db` database (sqlite ``.db`` or ``.json``).

    id = the row's key ``"structure_id"`` (written by `write_ase_db`; ``"id"`` is reserved by
    ase.db) or ``"id"`` if some other writer managed to store one, else ``f"db:{row.id}"``;
    group = key ``"group"`` or the id. Labels from the row's stored calculator results, as in
    `from_ase_atoms` (energy eV, forces eV/Å, stress GPa, magmoms μB).
    """
    structures = []
    with ase.db.connect(Path(path)) as db:
        for row in db.select():
            pairs = row.key_value_pairs
            structure_id = pairs.get(_DB_ID_KEY, pairs.get("id", f"db:{row.id}"))
            group = pairs.get("group")
            structures.append(
                from_ase_atoms(
                    row.toatoms(), str(structure_id), None if group is None else str(group)
                )
            )
    check_unique_ids(structures)
    return structures


def write_ase_db(structures: list[LabeledStructure], path: str | os.PathLike) -> None:
    """Write ``structures`` to a new `ase.db` database at ``path`` (an existing file is replaced).

    Each row holds the atoms, the labels in ASE units (SinglePointCalculator results) and the keys
    ``structure_id`` and ``group``. Round-trips exactly through `read_ase_db` (stress to within an
    ulp of the unit conversion).
    """
    check_unique_ids(structures)
    path = Path(path)
    if path.exists():
        path.unlink()
    with ase.db.connect(path, append=False) as db:
        for structure in structures:
            atoms = to_ase_atoms(structure)
            atoms.info.clear()
            db.write(atoms, key_value_pairs={_DB_ID_KEY: structure.id, "group": structure.group})
