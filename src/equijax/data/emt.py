"""Offline training data with real labels: short MD trajectories labelled by ASE's EMT potential.

EMT (effective medium theory) is a cheap many-body potential for the fcc metals Cu, Ni, Al, Ag, Au,
Pt, Pd. `generate_emt_dataset` runs a few Langevin steps from strained, rattled starting
structures at 300/600/1200 K and keeps snapshots, so a model trained on them learns a real
potential-energy surface (energy, forces, stress) without any download.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms, units
from ase.build import bulk, fcc100, fcc111
from ase.calculators.emt import EMT
from ase.data import atomic_numbers, reference_states
from ase.md.langevin import Langevin
from tqdm import tqdm

from equijax.data.baseline import per_element_linear_baseline
from equijax.data.structures import LabeledStructure
from equijax.units import EV_PER_A3_TO_GPA

__all__ = ["EMT_ELEMENTS", "generate_emt_dataset", "per_element_linear_baseline"]

EMT_ELEMENTS = ("Cu", "Ni", "Al", "Ag", "Au", "Pt", "Pd")
TEMPERATURES_K = (300.0, 600.0, 1200.0)
# Trajectory kinds, cycled so that even a small dataset has all of them.
KIND_SCHEDULE = (
    "bulk",
    "alloy",
    "vacancy",
    "alloy",
    "surface111",
    "alloy",
    "surface100",
    "vacancy",
)
SNAPSHOTS_PER_TRAJECTORY = 4
STEPS_BETWEEN_SNAPSHOTS = 5
TIMESTEP_FS = 2.0
FRICTION_PER_FS = 0.02
MAX_STRAIN = 0.03  # each strain component uniform in ±3 %
RATTLE_A = 0.03  # Å, Gaussian displacement of the starting positions
VACUUM_A = 6.0  # Å of vacuum on each side of a slab
# (cell, repeats) for bulk: 4 * prod for the cubic cell, prod for the primitive cell -> 4..32 atoms
BULK_SUPERCELLS = (
    ("cubic", (1, 1, 1)),
    ("cubic", (2, 1, 1)),
    ("cubic", (2, 2, 1)),
    ("cubic", (2, 2, 2)),
    ("primitive", (2, 2, 2)),
    ("primitive", (2, 2, 3)),
    ("primitive", (3, 3, 2)),
    ("primitive", (3, 3, 3)),
)


def generate_emt_dataset(
    n_structures: int, seed: int = 0, progress: bool = True
) -> list[LabeledStructure]:
    """``n_structures`` EMT-labelled snapshots of fcc metals, alloys, vacancies and surfaces.

    Each trajectory (kinds cycled: pure bulk, random binary/ternary alloys, bulk with a vacancy,
    (111) and (100) slabs, pure or alloyed) starts from a cell with Vegard's-law lattice constant,
    a random strain (each component ±3 %) and rattled positions, gets Maxwell-Boltzmann velocities
    at 300, 600 or 1200 K, and runs Langevin MD (2 fs steps); a snapshot is kept every 5 steps,
    4 per trajectory. Sizes 4..32 atoms. Half of the slabs are periodic in all three directions
    (with vacuum, so stress is defined), half have pbc = (T, T, F) and stress None.

    Args:
        n_structures: number of snapshots (the last trajectory may be cut short).
        seed: trajectory ``t`` is drawn from ``numpy.random.default_rng([seed, t])``, so the data
            are deterministic, and a larger ``n_structures`` extends a smaller one.
        progress: show a tqdm progress bar.

    Returns:
        `LabeledStructure`s with energy (eV), forces (N, 3) eV/Å, stress (3, 3) GPa (ASE sign,
        None unless 3D periodic), magmoms None. id ``f"emt{seed}-{t:05d}/{k}"``, group
        ``f"emt{seed}-{t:05d}"`` (snapshots of one trajectory share a split); ``atoms.info`` has
        ``"kind"`` and ``"temperature_K"``.
    """
    if n_structures < 0:
        raise ValueError(f"n_structures must be >= 0, got {n_structures}")
    structures: list[LabeledStructure] = []
    with tqdm(total=n_structures, desc="EMT data", disable=not progress) as bar:
        trajectory = 0
        while len(structures) < n_structures:
            wanted = min(SNAPSHOTS_PER_TRAJECTORY, n_structures - len(structures))
            snapshots = _trajectory(seed, trajectory, wanted)
            structures.extend(snapshots)
            bar.update(len(snapshots))
            trajectory += 1
    return structures


def _trajectory(seed: int, trajectory: int, n_snapshots: int) -> list[LabeledStructure]:
    """``n_snapshots`` labelled snapshots of one Langevin trajectory."""
    rng = np.random.default_rng([seed, trajectory])
    kind = KIND_SCHEDULE[trajectory % len(KIND_SCHEDULE)]
    temperature = float(rng.choice(TEMPERATURES_K))
    atoms = _starting_structure(kind, rng)
    atoms.positions += rng.normal(scale=RATTLE_A, size=atoms.positions.shape)
    atoms.info.update(kind=kind, temperature_K=temperature)
    atoms.calc = EMT()
    # Maxwell-Boltzmann momenta: each component ~ N(0, m kB T)
    sigma = np.sqrt(atoms.get_masses() * units.kB * temperature)[:, None]
    atoms.set_momenta(sigma * rng.standard_normal((len(atoms), 3)))
    dynamics = Langevin(
        atoms,
        TIMESTEP_FS * units.fs,
        temperature_K=temperature,
        friction=FRICTION_PER_FS / units.fs,
        fixcm=False,
        rng=rng,
    )
    group = f"emt{seed}-{trajectory:05d}"
    snapshots = []
    for k in range(n_snapshots):
        dynamics.run(STEPS_BETWEEN_SNAPSHOTS)
        snapshots.append(_label(atoms, f"{group}/{k}", group))
    return snapshots


def _label(atoms: Atoms, structure_id: str, group: str) -> LabeledStructure:
    """Snapshot of ``atoms`` (with an EMT calculator) and its EMT labels in equijax units."""
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces()
    stress = None
    if atoms.pbc.all():
        stress = atoms.get_stress(voigt=False) * EV_PER_A3_TO_GPA
    snapshot = atoms.copy()  # no calculator
    del snapshot.arrays["momenta"]
    return LabeledStructure(
        id=structure_id,
        atoms=snapshot,
        energy=energy,
        forces=forces,
        stress=stress,
        magmoms=None,
        group=group,
    )


def _starting_structure(kind: str, rng: np.random.Generator) -> Atoms:
    """An unrattled, strained starting structure of the given kind (4..32 atoms)."""
    if kind == "bulk":
        elements = [str(rng.choice(EMT_ELEMENTS))]
    elif kind == "alloy":
        elements = list(rng.choice(EMT_ELEMENTS, size=int(rng.integers(2, 4)), replace=False))
    else:  # vacancies and surfaces: pure or alloyed, equally often
        n_elements = 1 if rng.random() < 0.5 else int(rng.integers(2, 4))
        elements = list(rng.choice(EMT_ELEMENTS, size=n_elements, replace=False))
    fractions = rng.dirichlet(np.ones(len(elements)))
    lattice_constant = float(
        sum(
            f * reference_states[atomic_numbers[e]]["a"]
            for f, e in zip(fractions, elements, strict=True)
        )
    )
    if kind.startswith("surface"):
        atoms = _slab(kind, lattice_constant, rng)
    else:
        cell_kind, repeats = BULK_SUPERCELLS[rng.integers(len(BULK_SUPERCELLS))]
        if kind == "vacancy" and np.prod(repeats) * (4 if cell_kind == "cubic" else 1) < 8:
            repeats = (2, 2, 2)
        atoms = bulk("Cu", "fcc", a=lattice_constant, cubic=cell_kind == "cubic").repeat(repeats)
        if kind == "vacancy":
            del atoms[int(rng.integers(len(atoms)))]
    atoms.symbols = _random_symbols(elements, fractions, len(atoms), rng)
    strain = rng.uniform(-MAX_STRAIN, MAX_STRAIN, size=(3, 3))
    strain = (strain + strain.T) / 2
    if kind.startswith("surface"):  # strain in plane only: the vacuum stays as built
        strain[2, :] = strain[:, 2] = 0.0
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
    return atoms


def _slab(kind: str, lattice_constant: float, rng: np.random.Generator) -> Atoms:
    """A 2x2 (111) or (100) slab of 3 or 4 layers (12 or 16 atoms) with vacuum along z."""
    build = fcc111 if kind == "surface111" else fcc100
    layers = int(rng.integers(3, 5))
    slab = build("Cu", size=(2, 2, layers), a=lattice_constant, vacuum=VACUUM_A)
    if rng.random() < 0.5:
        slab.pbc = True  # periodic along z too, with vacuum: stress is defined
    return slab


def _random_symbols(
    elements: list[str], fractions: np.ndarray, n: int, rng: np.random.Generator
) -> list[str]:
    """``n`` symbols, each element at least once when ``n`` allows, shuffled."""
    counts = (
        np.ones(len(elements), dtype=int) if n >= len(elements) else np.zeros(len(elements), int)
    )
    counts += rng.multinomial(n - counts.sum(), fractions)
    symbols = [e for e, c in zip(elements, counts, strict=True) for _ in range(c)]
    return [str(s) for s in rng.permutation(symbols)]
