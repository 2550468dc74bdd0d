"""Teacher-labelled data: generated crystals labelled by a pretrained model (e, f, s, m), CHGNet
0.3.0 by default or any other registered one (SevenNet-0: distillation data without torch).

Distillation-style data for comparing architectures on a realistic, many-element
potential-energy surface without a download: `teacher_structures` builds strained and rattled
supercells of common prototypes (metals, alloys, oxides, halides, semiconductors, perovskites;
magnetic transition-metal oxides included so the magmom head has something to learn), and
`generate_teacher_dataset` labels them with the pretrained CHGNet (equijax's port, which
reproduces the PyTorch chgnet; see ``tests/models/test_chgnet_pretrained.py``). Labelled sets are
cached as extxyz, so a sweep labels once.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk
from tqdm import tqdm

from equijax.data.readers import read_ase, write_extxyz
from equijax.data.structures import LabeledStructure
from equijax.graphs import BucketPolicy
from equijax.models import registry
from equijax.models.param_cache import default_cache_dir
from equijax.potential import Potential

__all__ = ["PROTOTYPES", "generate_teacher_dataset", "teacher_structures"]

# (crystal structure, (unused) typical lattice constant in Å, chemistries). Each chemistry is one
# formula's symbols in ase.build.bulk's site order; perovskites are built by hand (A, B, X3).
PROTOTYPES = (
    ("fcc", 3.6, ("Cu", "Ni", "Al", "Ag", "Au", "Pt", "Pd", "Co")),
    ("bcc", 2.9, ("Fe", "W", "Mo", "Cr", "V", "Nb", "Li", "Na")),
    ("hcp", 3.0, ("Ti", "Mg", "Zn", "Co", "Zr")),
    ("diamond", 5.4, ("Si", "Ge", "C")),
    ("rocksalt", 4.4, ("NaCl", "MgO", "LiF", "NiO", "MnO", "FeO", "CoO", "CaO", "KCl")),
    ("zincblende", 5.6, ("GaAs", "ZnS", "InP", "CdTe", "AlP")),
    ("cesiumchloride", 3.2, ("CsCl", "NiAl", "FeAl", "CuZn")),
    ("fluorite", 5.5, ("CaF2", "CeO2", "SrCl2")),
    ("wurtzite", 3.2, ("ZnO", "GaN", "AlN")),
    ("perovskite", 3.95, ("SrTiO3", "BaTiO3", "LaMnO3", "KNbO3", "CaTiO3", "LaFeO3")),
)
# Experimental (or typical) lattice constant a of every chemistry above, Å.
LATTICE_A = {
    "C": 3.57,
    "Si": 5.43,
    "Ge": 5.66,
    "Li": 3.49,
    "Na": 4.23,
    "W": 3.16,
    "Mo": 3.15,
    "Nb": 3.30,
    "Cr": 2.88,
    "V": 3.03,
    "Fe": 2.87,
    "Cu": 3.61,
    "Ni": 3.52,
    "Al": 4.05,
    "Ag": 4.09,
    "Au": 4.08,
    "Pt": 3.92,
    "Pd": 3.89,
    "Co": 2.51,
    "Ti": 2.95,
    "Mg": 3.21,
    "Zn": 2.66,
    "Zr": 3.23,
    "NaCl": 5.64,
    "MgO": 4.21,
    "LiF": 4.03,
    "NiO": 4.18,
    "MnO": 4.45,
    "FeO": 4.33,
    "CoO": 4.26,
    "CaO": 4.81,
    "KCl": 6.29,
    "GaAs": 5.65,
    "ZnS": 5.41,
    "InP": 5.87,
    "CdTe": 6.48,
    "AlP": 5.46,
    "CsCl": 4.12,
    "NiAl": 2.89,
    "FeAl": 2.91,
    "CuZn": 2.95,
    "CaF2": 5.46,
    "CeO2": 5.41,
    "SrCl2": 6.98,
    "ZnO": 3.25,
    "GaN": 3.19,
    "AlN": 3.11,
    "SrTiO3": 3.905,
    "BaTiO3": 4.00,
    "LaMnO3": 3.95,
    "KNbO3": 4.02,
    "CaTiO3": 3.84,
    "LaFeO3": 3.93,
}
FCC_CO_A = 3.54  # Co appears both as hcp (a = 2.51) and fcc
# Bump when a change to the generator changes the structures: it is part of the cache file name.
GENERATOR_VERSION = 1
SNAPSHOTS_PER_GROUP = 4
STRAIN_SIGMA = 0.02  # strain (A + A^T)/2, A ~ N(0, 2 %): diagonal 2 %, off-diagonal 1.4 %
RATTLE_RANGE_A = (0.02, 0.15)  # Å, Gaussian displacement scale, drawn per snapshot
SUBSTITUTION_FRACTION = 0.25  # metals: fraction of structures alloyed with a second metal
MIN_ATOMS, MAX_ATOMS = 2, 40


def teacher_structures(n_structures: int, seed: int = 0) -> list[tuple[Atoms, str]]:
    """``n_structures`` unlabelled ``(atoms, group)`` pairs: perturbed prototype supercells.

    Groups of `SNAPSHOTS_PER_GROUP` snapshots share a base structure (prototype, chemistry,
    supercell of 2..40 atoms, a random metal substitution for a quarter of the metals) and differ
    in strain (symmetrised N(0, 2 %): 2 % on the diagonal, 1.4 % off it) and rattle (N(0, s) with s uniform in
    0.02..0.15 Å). Group ``g`` is drawn from ``numpy.random.default_rng([seed, g])``, so a larger
    ``n_structures`` extends a smaller one.
    """
    if n_structures < 0:
        raise ValueError(f"n_structures must be >= 0, got {n_structures}")
    out: list[tuple[Atoms, str]] = []
    group = 0
    while len(out) < n_structures:
        rng = np.random.default_rng([seed, group])
        base = _base_structure(rng)
        name = _group_name(seed, group)
        for _ in range(min(SNAPSHOTS_PER_GROUP, n_structures - len(out))):
            out.append((_perturb(base, rng), name))
        group += 1
    return out


def generate_teacher_dataset(
    n_structures: int,
    seed: int = 0,
    version: str = "chgnet-0.3.0",
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 32,
    progress: bool = True,
    potential=None,
) -> list[LabeledStructure]:
    """`teacher_structures` labelled by the pretrained model ``version`` (a name of
    `equijax.models.registry.available_pretrained`: ``"chgnet-0.3.0"`` (``"0.3.0"``),
    ``"sevennet-0"``, ...).

    Labels: energy (eV, total), forces (N, 3) eV/Å, stress (3, 3) GPa (CHGNet/ASE sign,
    symmetrised) and magmoms (N,) μB, as the pretrained model predicts them. The labelled set is
    written to ``{cache_dir}/teacher-v{GENERATOR_VERSION}-chgnet{version}-seed{seed}-n{n}.extxyz``
    (default ``$EQUIJAX_CACHE/teacher`` or ``~/.cache/equijax/teacher``), and every call, the
    first included, returns what that file holds, so a resumed run sees the same data. Processes
    that ask at the same time (a sweep's points) wait on a file lock and label once. ids are
    ``f"{group}/{k}"``; groups keep a base structure's snapshots in one split. ``potential``: an
    `Potential` of that pretrained model to label with (default: built here).
    """
    if n_structures < 0:
        raise ValueError(f"n_structures must be >= 0, got {n_structures}")
    if n_structures == 0:
        return []
    version = registry.pretrained_name(version)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "teacher"
    # CHGNet's sets keep their earlier file names ("chgnet0.3.0")
    label = version.replace("chgnet-", "chgnet")
    name = f"teacher-v{GENERATOR_VERSION}-{label}-seed{seed}-n{n_structures}.extxyz"
    path = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not path.exists():
            labelled = _label_all(
                teacher_structures(n_structures, seed),
                _ids(n_structures, seed),
                version,
                batch_size,
                progress,
                potential,
            )
            partial = folder / f"{name}.{os.getpid()}.partial"
            write_extxyz(labelled, partial)
            os.replace(partial, path)  # atomic: a killed run never leaves a truncated cache
    structures = read_ase(path, format="extxyz")
    if [s.id for s in structures] != _ids(n_structures, seed):
        raise ValueError(
            f"{path}: the cached teacher set does not hold the {n_structures} "
            "expected structures (delete the file to relabel)"
        )
    return structures


def _group_name(seed: int, group: int) -> str:
    return f"teacher{seed}-{group:05d}"


def _ids(n_structures: int, seed: int) -> list[str]:
    """The id ``f"{group}/{k}"`` of every structure `teacher_structures` makes, in order."""
    return [
        f"{_group_name(seed, i // SNAPSHOTS_PER_GROUP)}/{i % SNAPSHOTS_PER_GROUP}"
        for i in range(n_structures)
    ]


def _label_all(
    unlabelled: list[tuple[Atoms, str]],
    ids: list[str],
    version: str,
    batch_size: int,
    progress: bool,
    potential,
) -> list[LabeledStructure]:
    """Label ``(atoms, group)`` pairs (ids ``ids``) with the pretrained model, ``batch_size`` at
    a time."""
    if potential is None:
        # coarse buckets and a fixed graph count: a few compiled shapes for the whole set
        potential = Potential.from_pretrained(
            version, policy=BucketPolicy(growth=1.6, fixed_graphs=batch_size)
        )
    labelled: list[LabeledStructure] = []
    with tqdm(total=len(unlabelled), desc=f"{version} labels", disable=not progress) as bar:
        for start in range(0, len(unlabelled), batch_size):
            chunk = unlabelled[start : start + batch_size]
            predictions = potential.predict([atoms for atoms, _ in chunk], batch_size=batch_size)
            for (atoms, group), structure_id, p in zip(
                chunk, ids[start : start + batch_size], predictions, strict=True
            ):
                labelled.append(_labelled(atoms, group, structure_id, p))
            bar.update(len(chunk))
    return labelled


def _labelled(atoms: Atoms, group: str, structure_id: str, prediction: dict) -> LabeledStructure:
    """One `LabeledStructure` from a `Potential.predict` result, with non-finite labels refused."""
    for key in ("energy", "forces", "stress", "magmoms"):
        if not np.all(np.isfinite(prediction[key])):
            raise FloatingPointError(f"teacher label {key} of {structure_id} is not finite")
    as64 = {key: np.asarray(prediction[key], np.float64) for key in ("forces", "stress", "magmoms")}
    as64["stress"] = (as64["stress"] + as64["stress"].T) / 2  # float32 noise off; extxyz keeps 6
    return LabeledStructure(
        id=structure_id, atoms=atoms, energy=float(prediction["energy"]), group=group, **as64
    )


def _base_structure(rng: np.random.Generator) -> Atoms:
    """A prototype supercell with 2..40 atoms (unperturbed)."""
    kind, _, chemistries = PROTOTYPES[rng.integers(len(PROTOTYPES))]
    formula = str(chemistries[rng.integers(len(chemistries))])
    a = FCC_CO_A if (kind, formula) == ("fcc", "Co") else LATTICE_A[formula]
    if kind == "perovskite":
        atoms = _perovskite(formula, a)
    elif kind in ("hcp", "wurtzite"):
        atoms = bulk(formula, kind, a=a, c=a * (1.62 if kind == "hcp" else 1.60))
    else:
        atoms = bulk(formula, kind, a=a, cubic=bool(rng.random() < 0.5))
    target = int(rng.integers(MIN_ATOMS, MAX_ATOMS + 1))
    repeats = [1, 1, 1]
    while len(atoms) * np.prod(repeats) * 2 <= target:
        repeats[int(np.argmin(np.linalg.norm(atoms.cell.array, axis=1) * repeats))] += 1
    atoms = atoms.repeat(tuple(repeats))
    if kind in ("fcc", "bcc", "hcp") and len(atoms) > 1 and rng.random() < SUBSTITUTION_FRACTION:
        # the fcc, bcc and hcp metals; Co is in two lists, so it is drawn twice as often
        metals = [m for _, _, ms in PROTOTYPES[:3] for m in ms if m != formula]
        sites = rng.random(len(atoms)) < rng.uniform(0.1, 0.5)
        symbols = atoms.get_chemical_symbols()
        other = str(rng.choice(metals))
        atoms.symbols = [other if s else symbols[i] for i, s in enumerate(sites)]
    atoms.pbc = True
    return atoms


def _perovskite(formula: str, a: float) -> Atoms:
    """Cubic ABX3 perovskite (5 atoms): A at the corner, B at the body centre, X on the faces."""
    symbols = Atoms(formula).get_chemical_symbols()  # A, B, X, X, X
    frac = [(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)]
    return Atoms(symbols, scaled_positions=frac, cell=np.eye(3) * a, pbc=True)


def _perturb(base: Atoms, rng: np.random.Generator) -> Atoms:
    """A strained and rattled copy of ``base``."""
    atoms = base.copy()
    strain = rng.normal(0.0, STRAIN_SIGMA, size=(3, 3))
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + (strain + strain.T) / 2), scale_atoms=True)
    atoms.positions += rng.normal(0.0, rng.uniform(*RATTLE_RANGE_A), size=atoms.positions.shape)
    atoms.wrap()
    return atoms
