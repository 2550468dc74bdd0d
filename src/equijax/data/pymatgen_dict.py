"""pymatgen ``Structure.as_dict()`` layout <-> `ase.Atoms`, without importing pymatgen.

The layout (pymatgen >= 2022)::

    {"@module": "pymatgen.core.structure", "@class": "Structure", "charge": 0, "properties": {},
     "lattice": {"matrix": [[ax, ay, az], [bx, by, bz], [cx, cy, cz]], "pbc": [true, true, true],
                 "a": ..., "b": ..., "c": ..., "alpha": ..., "beta": ..., "gamma": ..., "volume": ...},
     "sites": [{"species": [{"element": "Cu", "occu": 1}], "abc": [fa, fb, fc],
                "xyz": [x, y, z], "label": "Cu", "properties": {}}, ...]}

Lattice rows are the cell vectors (Å); ``abc`` are fractional coordinates, ``xyz`` Cartesian (Å).
"""

from __future__ import annotations

import ase
import numpy as np
from ase.data import atomic_numbers

OCCUPANCY_TOLERANCE = 1e-6  # |occu - 1| above this is a partially occupied site


def atoms_from_structure_dict(structure: dict) -> ase.Atoms:
    """`ase.Atoms` from a pymatgen ``Structure.as_dict()`` dictionary.

    Cell (3, 3) Å = ``lattice.matrix`` (rows are cell vectors); positions (N, 3) Å = ``abc @ matrix``
    (as pymatgen computes Cartesian coordinates), or a site's ``xyz`` when it has no ``abc``;
    pbc = ``lattice.pbc`` if present, else True in all directions. Oxidation states and site
    properties are ignored.

    Raises:
        ValueError: for a missing or malformed lattice or site, a partially occupied or mixed site,
            or an element symbol ASE does not know (dummy species included). The message names the
            site index but not the structure id: callers add it.
    """
    if not isinstance(structure, dict):
        raise ValueError(f"structure must be a dict, got {type(structure).__name__}")
    lattice = structure.get("lattice")
    if not isinstance(lattice, dict) or "matrix" not in lattice:
        raise ValueError("structure has no lattice.matrix")
    cell = np.array(lattice["matrix"], dtype=np.float64)
    if cell.shape != (3, 3):
        raise ValueError(f"lattice.matrix has shape {cell.shape}, expected (3, 3)")
    pbc = lattice.get("pbc", True)
    sites = structure.get("sites")
    if not isinstance(sites, list) or not sites:
        raise ValueError("structure has no sites")
    numbers = np.empty(len(sites), dtype=np.int64)
    positions = np.empty((len(sites), 3), dtype=np.float64)
    for i, site in enumerate(sites):
        numbers[i] = _site_number(site, i)
        positions[i] = _site_position(site, i, cell)
    return ase.Atoms(numbers=numbers, positions=positions, cell=cell, pbc=pbc)


def structure_dict_from_atoms(atoms: ase.Atoms) -> dict:
    """A pymatgen ``Structure.as_dict()``-style dictionary for ``atoms`` (readable by pymatgen).

    Fractional ``abc`` = positions solved against the cell (not wrapped into [0, 1)), ``xyz`` =
    positions (Å). Needs a non-singular cell; raises `ValueError` otherwise.
    """
    cell = atoms.cell.array
    if abs(np.linalg.det(cell)) < 1e-12:
        raise ValueError(f"cannot write a pymatgen structure with a singular cell {cell.tolist()}")
    fractional = np.linalg.solve(cell.T, atoms.positions.T).T
    lengths = np.linalg.norm(cell, axis=1)
    symbols = atoms.get_chemical_symbols()
    return {
        "@module": "pymatgen.core.structure",
        "@class": "Structure",
        "charge": 0,
        "lattice": {
            "matrix": cell.tolist(),
            "pbc": [bool(p) for p in atoms.pbc],
            "a": float(lengths[0]),
            "b": float(lengths[1]),
            "c": float(lengths[2]),
            "alpha": float(_angle(cell[1], cell[2])),
            "beta": float(_angle(cell[0], cell[2])),
            "gamma": float(_angle(cell[0], cell[1])),
            "volume": float(abs(np.linalg.det(cell))),
        },
        "properties": {},
        "sites": [
            {
                "species": [{"element": symbol, "occu": 1}],
                "abc": abc.tolist(),
                "xyz": xyz.tolist(),
                "properties": {},
                "label": symbol,
            }
            for symbol, abc, xyz in zip(symbols, fractional, atoms.positions, strict=True)
        ],
    }


def _site_number(site: dict, i: int) -> int:
    species = site.get("species") if isinstance(site, dict) else None
    if not isinstance(species, list) or not species:
        raise ValueError(f"site {i} has no species")
    if len(species) > 1:
        raise ValueError(
            f"site {i} is a disordered site with {len(species)} species "
            f"(partial occupancy is not supported)"
        )
    occupancy = float(species[0].get("occu", 1.0))
    if abs(occupancy - 1.0) > OCCUPANCY_TOLERANCE:
        raise ValueError(f"site {i} has partial occupancy {occupancy}")
    symbol = species[0].get("element")
    number = atomic_numbers.get(symbol, 0) if isinstance(symbol, str) else 0
    if number < 1:
        raise ValueError(f"site {i} has an unknown element {symbol!r}")
    return number


def _site_position(site: dict, i: int, cell: np.ndarray) -> np.ndarray:
    if "abc" in site:
        fractional = np.array(site["abc"], dtype=np.float64)
        if fractional.shape != (3,):
            raise ValueError(f"site {i} has abc of shape {fractional.shape}, expected (3,)")
        return fractional @ cell
    if "xyz" in site:
        cartesian = np.array(site["xyz"], dtype=np.float64)
        if cartesian.shape != (3,):
            raise ValueError(f"site {i} has xyz of shape {cartesian.shape}, expected (3,)")
        return cartesian
    raise ValueError(f"site {i} has neither abc nor xyz coordinates")


def _angle(u: np.ndarray, v: np.ndarray) -> float:
    """Angle between two vectors, degrees."""
    cosine = np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v))
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))
