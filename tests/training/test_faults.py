"""Faults and partial data: a diverging loss stops training with a clear error and an intact
checkpoint; missing labels are masked out of the loss; the loader is deterministic, resumable and
its prefetch thread changes nothing."""

from __future__ import annotations

import dataclasses
import threading
import time

import jax
import numpy as np
import pytest
from trainutil import TINY_MODEL

from equijax.data import LabeledStructure, generate_emt_dataset, split_by_group
from equijax.graphs import BucketPolicy, atoms_to_graph
from equijax.potential import predict_padded
from equijax.training import loop
from equijax.training.batches import device_batch
from equijax.training.checkpoint import Checkpoints
from equijax.training.config import LossConfig, load_config, to_dict
from equijax.training.data_source import graph_cutoffs
from equijax.training.loader import Loader
from equijax.training.loop import TrainingDiverged, train
from equijax.training.model_setup import build_model
from equijax.training.step import (
    init_state,
    make_eval_step,
    make_mesh,
    make_optimizer,
    replicate,
    shard_batch,
)

# jax_disable_most_optimizations (XLA backend -O0): about half the compile time; results agree
# to rounding (the tolerances here are far above it)
pytestmark = pytest.mark.usefixtures("fast_compiles")


def _with(structure: LabeledStructure, **changes) -> LabeledStructure:
    return dataclasses.replace(structure, **changes)


# ---------------------------------------------------------------- divergence


def test_diverging_loss_stops_with_step_and_ids(uniform_structures, tmp_path, monkeypatch):
    """Forces x1e30 in batch 2 raise `TrainingDiverged` naming step 2 and ids; ckpt 1 loads."""
    config = load_config(
        None,
        [
            *TINY_MODEL,
            "data.batch_size=4",
            "train.max_steps=6",
            "train.checkpoint_every_steps=1",
            "train.progress=false",
            "train.prefetch=0",
            "loss.kind=mse",
            f"train.run_dir={tmp_path}",
        ],
    )
    structures = list(uniform_structures)
    train_set = split_by_group(structures, tuple(config.data.fractions), seed=config.data.seed)[0]
    # the loader's documented order: permutation drawn from (train.seed, epoch)
    order = np.random.default_rng([config.train.seed, 0]).permutation(len(train_set))
    batch2 = [train_set[i].id for i in order[4:8]]
    bad_id = batch2[1]
    position = next(i for i, s in enumerate(structures) if s.id == bad_id)
    structures[position] = _with(structures[position], forces=structures[position].forces * 1e30)
    assert np.isfinite(structures[position].forces).all()
    monkeypatch.setattr(loop, "load_structures", lambda cfg: structures)

    with pytest.raises(TrainingDiverged) as info:
        train(config)
    message = str(info.value)
    assert "step 2 " in message and "inf" in message.lower()
    for structure_id in batch2:
        assert repr(structure_id) in message
    ckpts = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert ckpts == [1]
    # load it the way `train --resume` does: abstract TrainState, model config check
    module = build_model(config.model)
    example = jax.tree_util.tree_map(
        lambda x: x[0],
        device_batch(
            [atoms_to_graph(structures[0].atoms, 4.0, 3.0)],
            structures[:1],
            np.arange(1),
            1,
            BucketPolicy(),
        )[0],
    )
    optimizer = make_optimizer(config.optim, config.train.max_steps)
    params = jax.eval_shape(module.init, jax.random.key(0), example)
    abstract = jax.eval_shape(lambda p: init_state(p, optimizer, config.train.seed), params)
    checkpoints = Checkpoints(tmp_path)
    state, meta = checkpoints.restore_latest(
        abstract, lambda section: section == to_dict(config)["model"]
    )
    checkpoints.close()
    assert int(state.step) == 1
    assert (meta["epoch"], meta["next_step"]) == (0, 1)
    for leaf in jax.tree_util.tree_leaves(state):
        assert np.isfinite(np.asarray(leaf, np.float64)).all()


# ---------------------------------------------------------------- missing labels


def _huber(error, delta):
    a = np.abs(error)
    return np.where(a < delta, 0.5 * error**2, delta * (a - 0.5 * delta))


def test_missing_labels_are_masked(uniform_structures):
    """Eval loss/MAEs/counts with missing labels equal numpy over the present labels only."""
    config = load_config(None, TINY_MODEL)
    loss = LossConfig(kind="huber", delta=0.1, energy=1.0, forces=1.0, stress=0.1, magmoms=0.3)
    rng = np.random.default_rng(3)
    base = uniform_structures[:6]
    structures = [
        base[0],
        _with(base[1], forces=None),
        _with(base[2], stress=None),
        _with(base[3], energy=None),
        _with(base[4], forces=None, stress=None),
        _with(base[5], magmoms=rng.normal(size=len(base[5].atoms))),
    ]
    graphs = [atoms_to_graph(s.atoms, *graph_cutoffs(config.model)) for s in structures]
    mesh = make_mesh(1)
    graph, targets, groups = device_batch(graphs, structures, np.arange(6), 1, BucketPolicy())
    single = jax.tree_util.tree_map(lambda x: x[0], graph)
    module = build_model(config.model)
    params = jax.jit(module.init)(jax.random.key(0), single)
    # move every param off its init (the energy readout starts at exactly zero)
    leaves, tree = jax.tree_util.tree_flatten(params)
    noise = [0.3 * rng.normal(size=np.shape(x)).astype(np.float32) for x in leaves]
    params = jax.tree_util.tree_unflatten(tree, [np.asarray(x) + n for x, n in zip(leaves, noise)])

    pred = jax.device_get(jax.jit(lambda p, g: predict_padded(module, p, g))(params, single))
    metrics = jax.device_get(
        make_eval_step(module, loss, mesh)(
            replicate(mesh, params), shard_batch(mesh, graph), shard_batch(mesh, targets)
        )
    )

    sums = {t: 0.0 for t in ("energy", "forces", "stress", "magmoms")}
    abs_sums, counts = dict(sums), dict(sums)
    start = 0
    for slot, k in enumerate(groups[0]):
        s, n = structures[k], len(structures[k].atoms)
        atoms = slice(start, start + n)
        start += n
        labels = {
            "energy": None if s.energy is None else (pred["energy_per_atom"][slot], s.energy / n),
            "forces": None if s.forces is None else (pred["forces"][atoms], s.forces),
            "stress": None if s.stress is None else (pred["stress"][slot], s.stress),
            "magmoms": None if s.magmoms is None else (pred["magmoms"][atoms], np.abs(s.magmoms)),
        }
        for t, pair in labels.items():
            if pair is None:
                continue
            error = np.asarray(pair[0], np.float64) - pair[1]
            sums[t] += _huber(error, loss.delta).sum()
            abs_sums[t] += np.abs(error).sum()
            counts[t] += error.size
    assert counts == {
        "energy": sum(s.energy is not None for s in structures),
        "forces": sum(3 * len(s.atoms) for s in structures if s.forces is not None),
        "stress": sum(9 for s in structures if s.stress is not None),
        "magmoms": sum(len(s.atoms) for s in structures if s.magmoms is not None),
    }
    assert min(counts.values()) > 0 and counts["forces"] < 3 * sum(len(s.atoms) for s in structures)
    weights = {
        "energy": loss.energy,
        "forces": loss.forces,
        "stress": loss.stress,
        "magmoms": loss.magmoms,
    }
    want_loss = sum(weights[t] * sums[t] / counts[t] for t in sums)
    for t in sums:
        assert float(metrics[f"count_{t}"]) == counts[t], t
        np.testing.assert_allclose(
            float(metrics[f"mae_{t}"]), abs_sums[t] / counts[t], rtol=2e-5, err_msg=t
        )
    np.testing.assert_allclose(float(metrics["loss"]), want_loss, rtol=2e-5)


# ---------------------------------------------------------------- loader


@pytest.fixture(scope="module")
def emt_graphs():
    """30 EMT structures (varied sizes) and their graphs."""
    structures = generate_emt_dataset(30, seed=5, progress=False)
    return structures, [atoms_to_graph(s.atoms, 4.0, 3.0) for s in structures]


def _assert_same_batches(got, want):
    assert [s for s, _ in got] == [s for s, _ in want]
    for (step, (g1, t1, groups1)), (_, (g2, t2, groups2)) in zip(got, want):
        for a, b in zip(groups1, groups2):
            np.testing.assert_array_equal(a, b, err_msg=f"step {step} groups")
        for a, b in zip(jax.tree_util.tree_leaves((g1, t1)), jax.tree_util.tree_leaves((g2, t2))):
            np.testing.assert_array_equal(a, b, err_msg=f"step {step}")


def test_loader_order_is_seeded_and_covers_each_structure_once(emt_graphs):
    """Epoch order is the (seed, epoch) permutation, batched in order, remainder dropped."""
    structures, graphs = emt_graphs
    loader = Loader(graphs, structures, batch_size=4, n_devices=2, seed=11, prefetch=0)
    assert loader.steps_per_epoch == 7
    for epoch in (0, 3):
        order = loader.order(epoch)
        np.testing.assert_array_equal(order, np.random.default_rng([11, epoch]).permutation(30))
        seen = []
        for step, (graph, targets, groups) in loader.epoch(epoch):
            index = np.concatenate(groups)
            assert sorted(index.tolist()) == sorted(order[4 * step : 4 * step + 4].tolist())
            for d, group in enumerate(groups):
                n_atoms = [len(structures[i].atoms) for i in group]
                want_e = [structures[i].energy / len(structures[i].atoms) for i in group]
                np.testing.assert_allclose(
                    targets.energy_per_atom[d][: len(group)], want_e, rtol=1e-6
                )
                assert targets.energy_mask[d].sum() == len(group)
                assert graph.atoms.n_node[d][: len(group)].tolist() == n_atoms
            seen.extend(index.tolist())
        assert len(seen) == len(set(seen)) == 28
    assert not np.array_equal(loader.order(0), loader.order(1))
    assert np.array_equal(
        Loader(graphs, structures, 4, 2, seed=11, shuffle=False).order(2), np.arange(30)
    )


def test_loader_resumes_mid_epoch_and_is_deterministic(emt_graphs):
    """``epoch(e, start_step)`` yields the tail of the full epoch; a fresh loader repeats it."""
    structures, graphs = emt_graphs
    full = list(Loader(graphs, structures, 4, 2, seed=2, prefetch=0).epoch(1))
    again = list(Loader(graphs, structures, 4, 2, seed=2, prefetch=0).epoch(1))
    _assert_same_batches(again, full)
    for start in (3, 6):
        tail = list(Loader(graphs, structures, 4, 2, seed=2, prefetch=0).epoch(1, start))
        _assert_same_batches(tail, full[start:])
    assert list(Loader(graphs, structures, 4, 2, seed=2).epoch(1, 7)) == []


def test_prefetch_gives_the_same_batches(emt_graphs):
    """The prefetch thread yields exactly the batches of ``prefetch=0``, also when resuming."""
    structures, graphs = emt_graphs
    plain = list(Loader(graphs, structures, 4, 2, seed=4, prefetch=0).epoch(2))
    for prefetch in (1, 3):
        _assert_same_batches(
            list(Loader(graphs, structures, 4, 2, seed=4, prefetch=prefetch).epoch(2)), plain
        )
        _assert_same_batches(
            list(Loader(graphs, structures, 4, 2, seed=4, prefetch=prefetch).epoch(2, 4)), plain[4:]
        )


def test_prefetch_errors_surface_and_early_stop_does_not_hang(emt_graphs, monkeypatch):
    """A batch-building error reaches the consumer; closing an epoch early stops the thread."""
    structures, graphs = emt_graphs
    loader = Loader(graphs, structures, 4, 2, seed=4, prefetch=2)
    batch = loader.batch

    def failing(epoch, step):
        if step == 3:
            raise RuntimeError("bad batch 3")
        return batch(epoch, step)

    monkeypatch.setattr(loader, "batch", failing)
    got = []
    with pytest.raises(RuntimeError, match="bad batch 3"):
        for step, _ in loader.epoch(0):
            got.append(step)
    assert got == [0, 1, 2]

    monkeypatch.setattr(loader, "batch", batch)
    before = set(threading.enumerate())
    t0 = time.monotonic()
    iterator = loader.epoch(0)
    next(iterator)
    producers = set(threading.enumerate()) - before
    assert producers  # the producer is blocked on its full queue
    iterator.close()
    assert time.monotonic() - t0 < 30
    for thread in producers:
        thread.join(timeout=10)
        assert not thread.is_alive()
