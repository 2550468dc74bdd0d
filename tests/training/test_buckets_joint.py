"""Joint size buckets (``BucketPolicy(joint=...)``): every batch fits, sizes are multiples of
``multiple`` on the ``joint * growth**k`` ladder for the smallest k whose rounded sizes fit, and
a run over EMT batches compiles far fewer shapes than with per-dimension buckets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from equijax.data import generate_emt_dataset
from equijax.graphs import (
    BucketPolicy,
    GraphSizes,
    atoms_to_graph,
    batch_graphs,
    max_sizes,
    pad_graph,
)
from equijax.training.loader import Loader

EXTRA = (1, 2, 1, 1, 1)  # pad_graph needs this much room beyond the real sizes


def _ladder(typical, growth, multiple, k):
    """Rung ``k`` of the joint ladder, from the docstring: round_up(ceil(b * growth**k), multiple)."""
    return [-(-math.ceil(max(b, 1.0) * growth**k) // multiple) * multiple for b in typical[:4]]


def _fits(sizes, real):
    return all(s >= r + e for s, r, e in zip(sizes, real, EXTRA))


def _check_joint(policy, real):
    sizes = policy.sizes_for(real)
    assert isinstance(sizes, GraphSizes)
    assert _fits(sizes, real), (real, sizes)
    assert all(s % policy.multiple == 0 for s in sizes[:4]), sizes
    if policy.fixed_graphs is not None:
        assert sizes.n_graph == policy.fixed_graphs + 1
    # on the ladder, and the rung below (rounded like every rung) does not fit
    rungs = [
        k
        for k in range(400)
        if _ladder(policy.joint, policy.growth, policy.multiple, k) == list(sizes[:4])
    ]
    assert rungs, (real, sizes)
    if rungs[0] > 0:
        below = _ladder(policy.joint, policy.growth, policy.multiple, rungs[0] - 1)
        assert not all(b >= r + e for b, r, e in zip(below, real, EXTRA)), (real, sizes, below)
    return sizes


@pytest.mark.parametrize("growth, multiple", [(1.2, 16), (1.5, 8), (1.05, 2), (2.0, 64)])
def test_joint_sizes_fit_and_are_minimal_on_random_sizes(growth, multiple):
    """Random sizes get a fitting joint bucket: multiples of `multiple`, smallest fitting rung."""
    rng = np.random.default_rng(int(growth * 100) + multiple)
    for _ in range(300):
        typical = GraphSizes(*rng.integers(0, 5000, size=4).tolist(), n_graph=16)
        policy = BucketPolicy(
            growth=growth,
            multiple=multiple,
            joint=typical,
            fixed_graphs=int(rng.integers(16, 40)) if rng.random() < 0.5 else None,
        )
        scale = rng.uniform(0.0, 20.0)
        real = GraphSizes(
            *[int(rng.integers(0, max(2, int(max(t, 1) * scale)))) for t in typical[:4]],
            n_graph=int(rng.integers(1, 17)),
        )
        sizes = _check_joint(policy, real)
        if policy.fixed_graphs is None:
            assert sizes.n_graph >= real.n_graph + 1


def test_fixed_graphs_overflow_raises():
    """A batch with more graphs than ``fixed_graphs`` is refused."""
    policy = BucketPolicy(joint=GraphSizes(64, 800, 100, 1600, 8), fixed_graphs=8)
    with pytest.raises(ValueError, match="fixed_graphs"):
        policy.sizes_for(GraphSizes(30, 300, 40, 500, 9))


@pytest.fixture(scope="module")
def emt():
    """96 EMT structures (4-32 atoms, bulk/alloys/vacancies/slabs) and their 6 Å graphs."""
    structures = generate_emt_dataset(96, seed=1, progress=False)
    return structures, [atoms_to_graph(s.atoms, 6.0, 3.0) for s in structures]


def test_emt_batches_fit_pad_and_use_few_shapes(emt):
    """300 random EMT batches pad fine with a handful of joint shapes, far fewer than per-dim."""
    _, graphs = emt
    batch = 8
    typical = GraphSizes(
        *[int(np.ceil(x)) for x in np.mean([g.sizes[:4] for g in graphs], axis=0) * batch],
        n_graph=batch,
    )
    joint = BucketPolicy(growth=1.2, multiple=16, fixed_graphs=batch, joint=typical)
    per_dim = BucketPolicy(growth=1.2, multiple=16, fixed_graphs=batch)
    rng = np.random.default_rng(0)
    shapes = {"joint": set(), "per_dim": set()}
    waste = {"joint": [], "per_dim": []}
    for i in range(300):
        batched = batch_graphs([graphs[j] for j in rng.choice(len(graphs), batch, replace=False)])
        real = batched.sizes
        for name, policy in (("joint", joint), ("per_dim", per_dim)):
            sizes = _check_joint(policy, real) if name == "joint" else policy.sizes_for(real)
            assert _fits(sizes, real)
            shapes[name].add(tuple(sizes))
            waste[name].append(1 - sum(real[:4]) / sum(sizes[:4]))
            if i < 20:
                assert pad_graph(batched, sizes).sizes == sizes
    assert len(shapes["joint"]) <= 5, sorted(shapes["joint"])
    assert len(shapes["per_dim"]) >= 2 * len(shapes["joint"]), (shapes["joint"], shapes["per_dim"])
    # joint buckets buy their few shapes with some padding, but it stays bounded
    assert np.mean(waste["joint"]) < 0.4


def test_loader_compiles_few_shapes_over_epochs(emt):
    """The 2-device training loader sees only a few padded shapes over 8 EMT epochs."""
    structures, graphs = emt
    loader = Loader(graphs, structures, batch_size=8, n_devices=2, seed=0, prefetch=0)
    shapes = set()
    for epoch in range(8):
        for _, (graph, targets, groups) in loader.epoch(epoch):
            shape = (
                graph.atoms.nodes["numbers"].shape,
                graph.atoms.senders.shape,
                graph.bonds.nodes["edge"].shape,
                graph.bonds.senders.shape,
                graph.atoms.n_node.shape,
            )
            shapes.add(shape)
            # each device's real part fits with the padding extras, and sizes are common
            reals = [batch_graphs([graphs[i] for i in g]).sizes for g in groups]
            common = max_sizes(reals)
            assert shape[0][1] >= common.n_node + 1 and shape[1][1] >= common.n_edge + 2
            assert shape[2][1] >= common.n_bond + 1 and shape[3][1] >= common.n_angle + 1
            assert targets.forces.shape[:2] == shape[0]
    assert 1 <= len(shapes) <= 4, sorted(shapes)
