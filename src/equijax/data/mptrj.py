"""MPtrj JSON (the layout CHGNet's ``StructureJsonData`` reads) <-> `LabeledStructure`.

Layout::

    {mp_id: {frame_id: {"structure": <pymatgen Structure.as_dict()>,
                        "energy_per_atom": float,        # eV/atom
                        "force": [[fx, fy, fz], ...],    # eV/Å
                        "stress": [[...], [...], [...]], # kBar, VASP sign (positive = compressive)
                        "magmom": [...] or None,         # μB
                        ...}}}

Conversions (as in chgnet/data/dataset.py, ``StructureJsonData.__getitem__``): stress GPa =
kBar × -0.1 (VASP's sign is the opposite of CHGNet/ASE's); energy eV = energy_per_atom × N.
Magmoms are kept as stored (CHGNet trains on their absolute values).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from equijax.data.pymatgen_dict import atoms_from_structure_dict, structure_dict_from_atoms
from equijax.data.structures import LabeledStructure, check_unique_ids

KBAR_VASP_TO_GPA = -0.1  # MPtrj stress (kBar, VASP sign) -> GPa, CHGNet/ASE sign

logger = logging.getLogger(__name__)


class MPtrjReadResult(NamedTuple):
    """What `read_mptrj_json` returns; unpacks as ``structures, malformed = ...``.

    Attributes:
        structures: the well-formed frames, in file order.
        malformed: ``{id: reason}`` for frames that were skipped (empty unless ``skip_malformed``).
    """

    structures: list[LabeledStructure]
    malformed: dict[str, str]


def read_mptrj_json(path: str | os.PathLike, *, skip_malformed: bool = False) -> MPtrjReadResult:
    """Read an MPtrj-style JSON file (see module docstring) into `LabeledStructure`s.

    Args:
        path: the JSON file.
        skip_malformed: if False (default) any malformed frame raises; if True malformed frames
            are skipped, logged, and reported in ``result.malformed``.

    Returns:
        `MPtrjReadResult`: structures with id ``f"{mp_id}/{frame_id}"``, group ``mp_id``, energy
        (eV), forces (N, 3) eV/Å, stress (3, 3) GPa (CHGNet/ASE sign), magmoms (N,) μB; a label
        that is missing or null is None.

    Raises:
        ValueError: listing the ids and reasons of all malformed frames (missing or unreadable
            structure, partial occupancy, unknown element, wrong label shapes, NaN/inf labels),
            unless ``skip_malformed``.
    """
    with open(path) as f:
        data = json.load(f)
    return parse_mptrj(data, skip_malformed=skip_malformed, source=str(path))


def parse_mptrj(
    data: dict, *, skip_malformed: bool = False, source: str = "MPtrj data"
) -> MPtrjReadResult:
    """`read_mptrj_json` on an already loaded ``{mp_id: {frame_id: frame}}`` dictionary."""
    if not isinstance(data, dict):
        raise ValueError(
            f"{source}: expected a JSON object {{mp_id: {{frame_id: frame}}}}, "
            f"got {type(data).__name__}"
        )
    structures: list[LabeledStructure] = []
    malformed: dict[str, str] = {}
    for mp_id, frames in data.items():
        if not isinstance(frames, dict):
            malformed[str(mp_id)] = f"expected {{frame_id: frame}}, got {type(frames).__name__}"
            continue
        for frame_id, frame in frames.items():
            structure_id = f"{mp_id}/{frame_id}"
            try:
                structures.append(parse_frame(structure_id, str(mp_id), frame))
            except (ValueError, TypeError, KeyError) as err:
                malformed[structure_id] = str(err)
    if malformed:
        listing = "; ".join(f"{k}: {v}" for k, v in list(malformed.items())[:20])
        more = "" if len(malformed) <= 20 else f"; ... and {len(malformed) - 20} more"
        if not skip_malformed:
            raise ValueError(
                f"{source}: {len(malformed)} malformed MPtrj entries "
                f"(pass skip_malformed=True to skip them): {listing}{more}"
            )
        logger.warning(
            "%s: skipped %d malformed MPtrj entries: %s%s", source, len(malformed), listing, more
        )
    check_unique_ids(structures)
    return MPtrjReadResult(structures, malformed)


def write_mptrj_json(structures: list[LabeledStructure], path: str | os.PathLike) -> None:
    """Write ``structures`` as MPtrj JSON (readable by `read_mptrj_json` and CHGNet).

    mp_id = ``group``; frame_id = the id with a leading ``f"{group}/"`` removed (else the whole
    id), so ids of the form ``"{group}/{frame}"`` round-trip. Writes ``structure`` (pymatgen
    ``as_dict()`` layout), ``energy_per_atom`` (eV/atom) and ``corrected_total_energy`` (eV),
    ``force`` (eV/Å), ``stress`` (kBar, VASP sign = GPa × -10), ``magmom`` (μB), ``mp_id``; missing
    labels as null. Round-trip error: positions ~1e-15 Å (fractional coordinates), energy and
    stress within an ulp or two (per-atom division and unit factor).

    Raises:
        ValueError: for two structures mapping to the same (mp_id, frame_id), or a singular cell.
    """
    check_unique_ids(structures)
    data: dict[str, dict[str, dict]] = {}
    for s in structures:
        prefix = f"{s.group}/"
        frame_id = s.id[len(prefix) :] if s.id.startswith(prefix) else s.id
        frames = data.setdefault(s.group, {})
        if frame_id in frames:
            raise ValueError(f"structure {s.id!r}: frame {s.group!r}/{frame_id!r} already written")
        try:
            structure_dict = structure_dict_from_atoms(s.atoms)
        except ValueError as err:
            raise ValueError(f"structure {s.id!r}: {err}") from err
        n = s.n_atoms
        frames[frame_id] = {
            "structure": structure_dict,
            "energy_per_atom": None if s.energy is None else s.energy / n,
            "corrected_total_energy": s.energy,
            "force": None if s.forces is None else s.forces.tolist(),
            "stress": None if s.stress is None else (s.stress / KBAR_VASP_TO_GPA).tolist(),
            "magmom": None if s.magmoms is None else s.magmoms.tolist(),
            "mp_id": s.group,
        }
    with open(Path(path), "w") as f:
        json.dump(data, f)


def parse_frame(structure_id: str, mp_id: str, frame) -> LabeledStructure:
    """One MPtrj frame (a dict as in the module docstring) -> `LabeledStructure` with id
    ``structure_id`` and group ``mp_id``; raises ValueError/TypeError/KeyError if malformed."""
    if not isinstance(frame, dict):
        raise ValueError(f"frame is a {type(frame).__name__}, not a dict")
    if frame.get("structure") is None:
        raise ValueError("missing 'structure'")
    atoms = atoms_from_structure_dict(frame["structure"])
    n = len(atoms)
    energy_per_atom = frame.get("energy_per_atom")
    energy = None if energy_per_atom is None else _scalar(energy_per_atom, "energy_per_atom") * n
    stress = frame.get("stress")
    if stress is not None:
        stress = np.array(stress, dtype=np.float64) * KBAR_VASP_TO_GPA
    structure = LabeledStructure(
        id=structure_id,
        atoms=atoms,
        energy=energy,
        forces=frame.get("force"),
        stress=stress,
        magmoms=frame.get("magmom"),
        group=mp_id,
    )
    return structure


def _scalar(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r:.80}")
    return float(value)
