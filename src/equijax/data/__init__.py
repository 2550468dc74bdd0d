"""Labelled structures for training: readers/writers (any ASE format, extxyz, ase.db, MPtrj JSON),
an offline dataset generator labelled by EMT, baselines, and group-aware splits (teacher-labelled
data, which needs a model, is `equijax.training.teacher`).

Units: eV, Å, eV/Å, GPa (CHGNet/ASE sign: positive = tensile), μB. Missing labels are None.
"""

from equijax.data.baseline import fit_atomref, per_element_linear_baseline
from equijax.data.emt import EMT_ELEMENTS, generate_emt_dataset
from equijax.data.mptrj import MPtrjReadResult, parse_mptrj, read_mptrj_json, write_mptrj_json
from equijax.data.pymatgen_dict import atoms_from_structure_dict, structure_dict_from_atoms
from equijax.data.readers import (
    from_ase_atoms,
    read_ase,
    read_ase_db,
    to_ase_atoms,
    write_ase_db,
    write_extxyz,
)
from equijax.data.splits import split_by_group
from equijax.data.structures import LabeledStructure, check_unique_ids
from equijax.units import EV_PER_A3_TO_GPA

__all__ = [
    "EMT_ELEMENTS",
    "EV_PER_A3_TO_GPA",
    "LabeledStructure",
    "MPtrjReadResult",
    "atoms_from_structure_dict",
    "check_unique_ids",
    "fit_atomref",
    "from_ase_atoms",
    "generate_emt_dataset",
    "parse_mptrj",
    "per_element_linear_baseline",
    "read_ase",
    "read_ase_db",
    "read_mptrj_json",
    "split_by_group",
    "structure_dict_from_atoms",
    "to_ase_atoms",
    "write_ase_db",
    "write_extxyz",
    "write_mptrj_json",
]
