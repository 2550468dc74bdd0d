"""Training batches streamed from a built dataset (`data.source: <dir>`) against the in-memory
path: the same batches; a resumed epoch sees exactly the uninterrupted one's batches; with two
processes each reads only its devices' structures, the shards are disjoint and their union is the
epoch."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from trainutil import TINY_MODEL

from equijax.data import read_ase, split_by_group
from equijax.graphs import atoms_to_graph
from equijax.graphs.dataset import GraphView
from equijax.graphs.dataset_build import build_dataset
from equijax.models.config import ConfigError
from equijax.training.config import load_config
from equijax.training.data_source import open_streamed
from equijax.training.loader import Loader

BATCH, DEVICES, SEED = 6, 2, 7


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from equijax.data import generate_emt_dataset, write_extxyz

    root = tmp_path_factory.mktemp("streamed")
    write_extxyz(generate_emt_dataset(40, seed=2, progress=False), root / "s.extxyz")
    ds = build_dataset(root / "s.extxyz", root / "ds", cutoff=4.0, bond_cutoff=3.0, progress=False)
    return ds, root / "s.extxyz"


def _streamed(dataset, **kwargs):
    config = load_config(None, [*TINY_MODEL, f"data.source={dataset.path}", "data.n_structures=0"])
    return config, open_streamed(config)


def _equal(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(x, y)


class RecordingView(GraphView):
    """A `GraphView` that records which structures (dataset indices) it was asked for."""

    def __init__(self, view):
        super().__init__(view.dataset, view.indices)
        self.read = []

    def __getitem__(self, k):
        self.read.append(int(self.indices[k]))
        return super().__getitem__(k)


def test_streamed_batches_equal_in_memory(dataset):
    ds, source = dataset
    config, streamed = _streamed(ds)
    structures = read_ase(source)
    want_splits = split_by_group(structures, tuple(config.data.fractions), seed=config.data.seed)
    for name, want in zip(("train", "val", "test"), want_splits):
        graphs, labels, sizes = streamed.splits[name]
        assert [labels[k].id for k in range(len(labels))] == [s.id for s in want]
    graphs, labels, sizes = streamed.splits["train"]
    train = want_splits[0]
    memory = Loader([atoms_to_graph(s.atoms, 4.0, 3.0) for s in train], train, BATCH, DEVICES, SEED)
    disk = Loader(graphs, labels, BATCH, DEVICES, SEED, sizes=sizes)
    assert disk.steps_per_epoch == memory.steps_per_epoch
    for (s1, b1), (s2, b2) in zip(memory.epoch(1), disk.epoch(1)):
        assert s1 == s2
        _equal(b1[:2], b2[:2])
        assert [g.tolist() for g in b1[2]] == [g.tolist() for g in b2[2]]


def test_resumed_epoch_sees_the_same_batches(dataset):
    graphs, labels, sizes = _streamed(dataset[0])[1].splits["train"]
    loader = lambda: Loader(graphs, labels, BATCH, DEVICES, SEED, sizes=sizes, prefetch=2)
    full = list(loader().epoch(3))
    for start in (1, 3):
        tail = list(loader().epoch(3, start))
        assert [s for s, _ in tail] == [s for s, _ in full[start:]]
        for (_, a), (_, b) in zip(tail, full[start:]):
            _equal(a[:2], b[:2])


def test_two_processes_read_disjoint_shards_whose_union_is_the_epoch(dataset):
    graphs, labels, sizes = _streamed(dataset[0])[1].splits["train"]
    single = Loader(graphs, labels, BATCH, DEVICES, SEED, sizes=sizes, prefetch=0)
    procs = []
    for p in range(DEVICES):  # process p owns device p of the mesh
        view = RecordingView(graphs)
        procs.append(
            (view, Loader(view, labels, BATCH, DEVICES, SEED, sizes=sizes, local_devices=[p]))
        )
    epoch = 2
    for step, (graph, targets, groups) in single.epoch(epoch):
        reads = []
        for p, (view, loader) in enumerate(procs):
            view.read.clear()
            g, t, grp = loader.batch(epoch, step)
            assert [x.tolist() for x in grp] == [x.tolist() for x in groups]
            reads.append(set(view.read))
            assert reads[-1] == set(graphs.indices[groups[p]].tolist())  # its own share only
            _equal(
                jax.tree_util.tree_map(lambda x, p=p: x[p], (g, t)),
                jax.tree_util.tree_map(lambda x, p=p: x[p], (graph, targets)),
            )
        assert not reads[0] & reads[1]
        order = single.order(epoch)[step * BATCH : (step + 1) * BATCH]
        assert reads[0] | reads[1] == set(graphs.indices[order].tolist())
    seen = set().union(*[set(v.read) for v, _ in procs])
    assert seen <= set(graphs.indices.tolist())


def test_limited_evaluation_equals_in_memory_on_its_sample(dataset):
    """An evaluation loader with ``max_structures`` streams the batches an in-memory loader of
    exactly its sample builds, the same sample every epoch, drawn from the split."""
    ds, source = dataset
    config, streamed = _streamed(ds)
    graphs, labels, sizes = streamed.splits["train"]
    want = {s.id: s for s in read_ase(source)}
    disk = Loader(
        graphs, labels, BATCH, DEVICES, SEED, shuffle=False, sizes=sizes, max_structures=13
    )
    sample = disk.order(0)
    assert len(set(sample.tolist())) == disk.n_used == 13 and disk.steps_per_epoch == 13 // BATCH
    np.testing.assert_array_equal(disk.order(5), sample)
    assert set(graphs.indices[sample].tolist()) <= set(graphs.indices.tolist())
    chosen = [want[labels[int(k)].id] for k in sample]
    memory = Loader(
        [atoms_to_graph(s.atoms, 4.0, 3.0) for s in chosen],
        chosen,
        BATCH,
        DEVICES,
        SEED,
        shuffle=False,
        mean_sizes=disk.mean_sizes,
    )
    assert memory.steps_per_epoch == disk.steps_per_epoch
    for (_, b1), (_, b2) in zip(memory.epoch(0), disk.epoch(0)):
        _equal(b1[:2], b2[:2])
    full = Loader(graphs, labels, BATCH, DEVICES, SEED, shuffle=False, sizes=sizes)
    assert full.n_used == len(labels)
    with pytest.raises(ValueError, match="max_structures"):
        Loader(graphs, labels, BATCH, DEVICES, SEED, sizes=sizes, max_structures=13)


def test_cutoff_mismatch_is_a_config_error(dataset):
    config = load_config(None, [*TINY_MODEL[:-1], f"data.source={dataset[0].path}"])
    with pytest.raises(ConfigError, match="data.source.*cutoffs 4.0/3.0"):
        open_streamed(config)


def test_train_from_a_built_dataset(dataset, tmp_path, capsys):
    from equijax.training.loop import train

    config = load_config(
        None,
        [
            *TINY_MODEL,
            f"data.source={dataset[0].path}",
            "data.n_structures=0",
            "data.batch_size=4",
            "train.max_steps=2",
            "train.progress=false",
            f"train.run_dir={tmp_path / 'run'}",
        ],
    )
    result = train(config)
    assert result["steps"] == 2 and np.isfinite(result["val"]["loss"])
    err = capsys.readouterr().err
    assert "streaming 40 of 40 structures" in err
    splits = _streamed(dataset[0])[1].splits
    val, test = len(splits["val"][1]), len(splits["test"][1])
    assert f"evaluation: val {val // 4 * 4} of {val}, test {test // 4 * 4} of {test}" in err
    assert result["evaluated_structures"] == {"val": val // 4 * 4, "test": test // 4 * 4}


def test_val_and_test_share_the_train_buckets(dataset, tmp_path):
    """Val and test pad to the buckets of the train split's mean sizes (one evaluation step)."""
    from equijax.training.loop import _setup

    config = load_config(
        None,
        [*TINY_MODEL, f"data.source={dataset[0].path}", "data.n_structures=0",
         "data.batch_size=4", "train.progress=false", f"train.run_dir={tmp_path / 'run'}"],
    )  # fmt: skip
    loaders = _setup(config, resume=False).loaders
    train_sizes = np.mean(loaders["train"].sizes, axis=0)
    assert loaders["val"].policy == loaders["test"].policy == loaders["train"].policy
    np.testing.assert_array_equal(loaders["test"].mean_sizes, train_sizes)
