"""`LabeledStructure` validation: every malformed field raises a ValueError that names the id."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk, molecule

from equijax.data import LabeledStructure, check_unique_ids


def _cu() -> LabeledStructure:
    return bulk("Cu", "fcc", a=3.6, cubic=True)


def test_group_defaults_to_id_and_arrays_are_float64():
    """group falls back to the id; list labels become float64 arrays of the given values."""
    s = LabeledStructure(id="a", atoms=_cu(), energy=1, forces=[[0, 0, 1]] * 4)
    assert s.group == "a" and s.energy == 1.0 and isinstance(s.energy, float)
    assert s.forces.dtype == np.float64 and s.forces.tolist() == [[0.0, 0.0, 1.0]] * 4
    assert s.stress is None and s.magmoms is None


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("forces", np.zeros((3, 3)), "forces has shape (3, 3), expected (4, 3)"),
        ("forces", np.full((4, 3), np.nan), "forces contains NaN"),
        ("stress", np.zeros(6), "stress has shape (6,), expected (3, 3)"),
        ("stress", np.diag([1.0, np.inf, 0.0]), "stress contains NaN or inf"),
        ("magmoms", np.zeros((4, 1)), "magmoms has shape (4, 1), expected (4,)"),
        ("energy", float("nan"), "energy is nan"),
        ("energy", [1.0, 2.0], "energy must be a scalar"),
        ("forces", [[1, 2, 3], [1, 2]], "forces is not a numeric array"),
    ],
)
def test_bad_labels_raise_naming_the_id(field, value, message):
    """Wrong shapes, NaN/inf and non-numeric labels raise ValueError with the id and the problem."""
    with pytest.raises(ValueError, match="'bad-1'") as err:
        LabeledStructure(id="bad-1", atoms=_cu(), **{field: value})
    assert message in str(err.value)


def test_bad_atoms_raise_naming_the_id():
    """NaN positions, an empty structure and stress on a non-periodic molecule are rejected."""
    atoms = _cu()
    atoms.positions[1, 2] = np.nan
    with pytest.raises(ValueError, match="'p'.*positions contains NaN"):
        LabeledStructure(id="p", atoms=atoms)
    with pytest.raises(ValueError, match="'e'.*no atoms"):
        LabeledStructure(id="e", atoms=_cu()[[]])
    with pytest.raises(ValueError, match="'m'.*stress is only defined"):
        LabeledStructure(id="m", atoms=molecule("H2O"), stress=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="non-empty string"):
        LabeledStructure(id="", atoms=_cu())


def test_validate_catches_later_mutation():
    """validate() re-checks a structure whose labels were replaced after construction."""
    s = LabeledStructure(id="mut", atoms=_cu(), forces=np.zeros((4, 3)))
    s.forces = np.zeros((5, 3))
    with pytest.raises(ValueError, match="'mut'.*forces has shape"):
        s.validate()


def test_duplicate_ids_are_reported():
    """check_unique_ids lists the repeated id."""
    structures = [LabeledStructure(id=i, atoms=_cu()) for i in ("x", "y", "x")]
    with pytest.raises(ValueError, match=r"\['x'\]"):
        check_unique_ids(structures)
