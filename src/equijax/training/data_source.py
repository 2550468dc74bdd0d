"""Where a run's structures come from (``data.source``) and their graphs at the model's cutoffs."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from equijax import data
from equijax.data.splits import split_indices_by_group
from equijax.graphs import CrystalGraph, atoms_to_graph
from equijax.graphs.dataset import DiskDataset, GraphView, LabelView, is_dataset
from equijax.graphs.validation import StructureLabel
from equijax.models.config import ConfigError
from equijax.training.config import ExperimentConfig
from equijax.training.model_spec import ModelSpec
from equijax.training.teacher import generate_teacher_dataset


def load_structures(config: ExperimentConfig) -> list[data.LabeledStructure]:
    """The labelled structures named by ``config.data.source``: ``emt`` or ``teacher``
    (generated), or a path to an extxyz/any ``ase.io`` file, an ASE ``.db``, an MPtrj-layout
    ``.json`` or a built dataset directory (the first ``data.n_structures`` of it; 0 takes all;
    a built dataset's are rebuilt from its graphs: for small ones, training streams them)."""
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
    if is_dataset(path):
        dataset = DiskDataset(path)
        return [dataset.structure(i) for i in range(min(n or len(dataset), len(dataset)))]
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


BASELINE_SAMPLE = 2000  # structures per split the linear baseline of a streamed dataset uses


@dataclasses.dataclass
class StreamedSplits:
    """A built dataset's train/val/test splits, read lazily: per split, ``(graphs, labels,
    sizes)`` for `Loader`; the AtomRef (94,) eV from the dataset's statistics; the linear
    baseline of `per_element_linear_baseline` on the first `BASELINE_SAMPLE` structures of the
    train and val splits."""

    dataset: DiskDataset
    splits: dict[str, tuple[GraphView, LabelView, np.ndarray]]
    atomref: np.ndarray
    baseline: dict


def open_streamed(config: ExperimentConfig) -> StreamedSplits | None:
    """The splits of ``config.data.source`` when it is a built dataset (`equijax data build`),
    else None (the in-memory path). Checks the dataset's cutoffs and elements against the model
    (`ConfigError` naming ``data.source``); splits by group from the stored group of each
    structure, as `split_by_group` splits the same structures."""
    source = config.data.source
    if source in ("emt", "teacher") or not is_dataset(source):
        return None
    dataset = DiskDataset(source)
    atom_cutoff, bond_cutoff = graph_cutoffs(config.model)
    if (dataset.cutoff, dataset.bond_cutoff) != (atom_cutoff, bond_cutoff):
        raise ConfigError(
            f"config key 'data.source': {source} was built with cutoffs {dataset.cutoff}/"
            f"{dataset.bond_cutoff} Å but the model uses {atom_cutoff}/{bond_cutoff} Å; build "
            f"it again with `equijax data build SOURCE OUT --cutoff {atom_cutoff} "
            f"--bond-cutoff {bond_cutoff}`"
        )
    try:
        config.model.config.check_numbers(np.array(dataset.stats["elements"]))
    except ValueError as err:
        raise ConfigError(f"config key 'data.source': {source}: {err}") from None
    n = min(config.data.n_structures or len(dataset), len(dataset))
    parts = split_indices_by_group(
        dataset.group_index[:n],
        dataset.group_names,
        tuple(config.data.fractions),
        seed=config.data.seed,
    )
    sizes = np.asarray(dataset.sizes)
    splits = {
        name: (GraphView(dataset, idx), LabelView(dataset, idx), sizes[idx])
        for name, idx in zip(("train", "val", "test"), parts)
    }
    sample = {
        name: [dataset.structure(int(i)) for i in splits[name][1].indices[:BASELINE_SAMPLE]]
        for name in ("train", "val")
    }
    baseline = {
        k: v
        for k, v in data.per_element_linear_baseline(
            sample["train"], sample["val"], skip_unseen=True
        ).items()
        if k != "coefficients"
    }
    tqdm.write(
        f"data: streaming {n} of {len(dataset)} structures from the built dataset {source} "
        f"(train/val/test {', '.join(str(len(p)) for p in parts)})",
        file=sys.stderr,
    )
    atomref = np.asarray(dataset.stats["atomref"], np.float32)
    return StreamedSplits(dataset, splits, atomref, baseline)
