"""Fixtures for the data tests: a small EMT dataset and a few hand-made labelled structures."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

from equijax.data import LabeledStructure, generate_emt_dataset


@pytest.fixture(scope="session")
def emt_structures() -> list[LabeledStructure]:
    """64 EMT snapshots (16 trajectories, every kind in the schedule), seed 3."""
    return generate_emt_dataset(64, seed=3, progress=False)


@pytest.fixture(scope="session")
def mixed_structures(emt_structures) -> list[LabeledStructure]:
    """EMT snapshots plus structures with magmoms, a triclinic cell, partial and no labels."""
    rng = np.random.default_rng(0)
    triclinic = Atoms(
        "FeO2",
        positions=rng.uniform(0, 3, (3, 3)),
        cell=[[4.1, 0.0, 0.0], [0.7, 3.9, 0.0], [-0.4, 0.3, 5.2]],
        pbc=True,
    )
    stress = rng.normal(size=(3, 3))
    extra = [
        LabeledStructure(
            id="mp-1/0",
            atoms=triclinic,
            energy=-17.25,
            forces=rng.normal(size=(3, 3)),
            stress=(stress + stress.T) / 2,
            magmoms=np.array([3.2, -0.1, 0.05]),
            group="mp-1",
        ),
        LabeledStructure(
            id="mp-1/1", atoms=bulk("Si", "diamond", a=5.43), energy=-10.8, group="mp-1"
        ),
        LabeledStructure(id="unlabelled", atoms=bulk("Cu", "fcc", a=3.6)),
    ]
    return list(emt_structures[:12]) + extra


@pytest.fixture(scope="session")
def molecule_structure() -> LabeledStructure:
    """A non-periodic molecule with energy and forces but no stress."""
    atoms = molecule("H2O")
    return LabeledStructure(
        id="h2o", atoms=atoms, energy=-14.2, forces=np.arange(9.0).reshape(3, 3) / 10
    )
