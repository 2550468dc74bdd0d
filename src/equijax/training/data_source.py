"""Where a run's structures come from (``data.source``) and their graphs at the model's cutoffs."""

from __future__ import annotations

from pathlib import Path

from equijax import data
from equijax.graphs import CrystalGraph, atoms_to_graph
from equijax.graphs.validation import StructureLabel
from equijax.training.config import ExperimentConfig
from equijax.training.model_spec import ModelSpec
from equijax.training.teacher import generate_teacher_dataset


def load_structures(config: ExperimentConfig) -> list[data.LabeledStructure]:
    """The labelled structures named by ``config.data.source``: ``emt`` or ``teacher``
    (generated), or a path to an extxyz/any ``ase.io`` file, an ASE ``.db`` or an MPtrj-layout
    ``.json`` (the first ``data.n_structures`` of it; 0 takes all)."""
    source, n = config.data.source, config.data.n_structures
    if source == "emt":
        return data.generate_emt_dataset(n, seed=config.data.seed, progress=config.train.progress)
    if source == "teacher":
        return generate_teacher_dataset(
            n,
            seed=config.data.seed,
            version=config.data.teacher,
            cache_dir=config.data.cache_dir,
            progress=config.train.progress,
        )
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"data.source {source!r}: no such file")
    if path.suffix == ".json":
        out = data.read_mptrj_json(path)
        structures = out[0] if isinstance(out, tuple) else out
    elif path.suffix == ".db":
        structures = data.read_ase_db(path)
    else:
        structures = data.read_ase(path)
    return structures[:n] if n else structures


def graph_cutoffs(model: ModelSpec) -> tuple[float, float]:
    """(atom graph, bond graph) cutoffs in Å of the model (a pretrained one's when fine-tuning)."""
    return model.config.atom_graph_cutoff, model.config.bond_graph_cutoff


def structure_graphs(
    structures: list[data.LabeledStructure], model: ModelSpec
) -> list[CrystalGraph]:
    """The graph of each structure at the model's cutoffs (bad input raises `ValueError`
    naming the structure)."""
    atom_cutoff, bond_cutoff = graph_cutoffs(model)
    graphs = []
    for i, s in enumerate(structures):
        label = StructureLabel(s.atoms, i)
        try:
            model.config.check_numbers(s.atoms.numbers)
        except ValueError as err:
            raise ValueError(f"{label}: {err}") from None
        graphs.append(atoms_to_graph(s.atoms, atom_cutoff, bond_cutoff, label=label))
    return graphs
