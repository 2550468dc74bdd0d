"""Batching, padding, masks and size buckets (`equijax.graphs.batching`, `equijax.graphs.buckets`)."""

from __future__ import annotations

import math

import ase
import ase.build
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.neighborlist import neighbor_list

from equijax.graphs import (
    BucketPolicy,
    GraphSizes,
    atoms_to_graph,
    batch_graphs,
    edge_vectors,
    max_sizes,
    pad_batch,
    pad_graph,
    padding_masks,
    unbatch_graphs,
    unpad_graph,
)

CUTOFF, BOND_CUTOFF = 6.0, 3.0


@pytest.fixture(scope="module")
def structures(bench_structures):
    """Small structures of every kind; the last ones have no angles (H2) or no bonds (bcc Li, a=4)."""
    tiny = ase.Atoms(
        "Cu",
        positions=[[0.1, 0.2, 0.3]],
        cell=[[2.5, 0, 0], [0.3, 2.5, 0], [0.2, 0.1, 2.6]],
        pbc=True,
    )
    slab = ase.build.fcc111("Al", (2, 2, 2), vacuum=4.0)
    slab.rattle(0.02, seed=2)
    return [
        bench_structures[1],  # ZnS, 8 atoms
        bench_structures[29],  # Fe, 6 atoms
        bench_structures[17],  # GaAs, 8 atoms
        ase.build.molecule("CH3CH2OH"),
        tiny,
        slab,
        ase.Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]),  # one bond, no angle
        ase.build.bulk("Li", "bcc", a=4.0, cubic=True),  # neighbours at 3.46 Å: no bond at all
    ]


@pytest.fixture(scope="module")
def graphs(structures):
    """Single-structure graphs of `structures`."""
    return [atoms_to_graph(a, CUTOFF, BOND_CUTOFF) for a in structures]


@pytest.fixture(scope="module")
def reference_sums(structures):
    """Per structure, from ase alone: sum of neighbour distances, of positions, of angle cosines."""
    out = []
    for atoms in structures:
        i, d, D = neighbor_list("idD", atoms, CUTOFF)
        short = d < BOND_CUTOFF
        units = D[short] / d[short, None]
        centers = i[short]
        cos_sum = 0.0  # sum over ordered pairs a != b at one centre of u_a . u_b
        for c in np.unique(centers):
            u = units[centers == c]
            cos_sum += float(np.sum(u.sum(axis=0) ** 2) - len(u))
        n_angles = int(sum(k * (k - 1) for k in np.bincount(centers)))
        out.append(
            dict(
                dist=float(d.sum()),
                pos=atoms.positions.sum(axis=0),
                cos=cos_sum,
                n_edges=len(i),
                n_angles=n_angles,
            )
        )
    return out


def test_batch_unbatch_round_trip(graphs, graphs_identical):
    """unbatch_graphs(batch_graphs(gs)) gives back every graph, all arrays and dtypes equal."""
    back = unbatch_graphs(batch_graphs(graphs))
    assert len(back) == len(graphs)
    for k, (g, want) in enumerate(zip(back, graphs)):
        graphs_identical(g, want, context=f"graph {k}: ")


def test_batch_sizes_are_sums(graphs):
    """The batch's sizes are the sums of the single graphs' sizes (one graph each)."""
    batch = batch_graphs(graphs)
    want = np.sum([np.array(g.sizes) for g in graphs], axis=0)
    assert tuple(batch.sizes) == tuple(int(x) for x in want)
    assert batch.sizes.n_graph == len(graphs)


def test_batched_edge_vectors_match_single(graphs):
    """edge_vectors of the batch equals the concatenated vectors of the single graphs."""
    batch = batch_graphs(graphs)
    want = np.concatenate([edge_vectors(g.atoms) for g in graphs])
    np.testing.assert_allclose(edge_vectors(batch.atoms), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("extra_graphs", [1, 3])
def test_pad_unpad_round_trip(graphs, graphs_identical, extra_graphs):
    """unpad_graph(pad_graph(batch, sizes)) equals the batch, with one or several padding graphs."""
    batch = batch_graphs(graphs)
    r = batch.sizes
    sizes = GraphSizes(
        r.n_node + 5, r.n_edge + 7, r.n_bond + 3, r.n_angle + 11, r.n_graph + extra_graphs
    )
    padded = pad_graph(batch, sizes)
    assert padded.sizes == sizes
    # padding keeps every field's dtype and trailing shape
    for (path, p), b in zip(
        jax.tree_util.tree_leaves_with_path(padded), jax.tree_util.tree_leaves(batch)
    ):
        assert p.dtype == b.dtype and p.shape[1:] == b.shape[1:], jax.tree_util.keystr(path)
    graphs_identical(unpad_graph(padded), batch)


def test_pad_graph_minimal_sizes(graphs, graphs_identical):
    """Padding by exactly the documented minimum (1 node, 2 edges, 1 bond, 1 angle, 1 graph) works."""
    batch = batch_graphs(graphs[:2])
    r = batch.sizes
    sizes = GraphSizes(r.n_node + 1, r.n_edge + 2, r.n_bond + 1, r.n_angle + 1, r.n_graph + 1)
    graphs_identical(unpad_graph(pad_graph(batch, sizes)), batch)


def test_pad_graph_rejects_too_small_sizes(graphs):
    """pad_graph raises ValueError when a size leaves no room for the padding graph."""
    batch = batch_graphs(graphs[:2])
    r = batch.sizes
    for field in GraphSizes._fields:
        sizes = GraphSizes(r.n_node + 1, r.n_edge + 2, r.n_bond + 1, r.n_angle + 1, r.n_graph + 1)
        sizes = sizes._replace(**{field: getattr(r, field)})
        with pytest.raises(ValueError, match=field):
            pad_graph(batch, sizes)


# (real graphs in the batch): the last real graph has no bonds, no angles, or both
BATCHES = [(0, 1, 2, 3, 4), (4, 5, 6), (0, 3, 7), (5, 6, 7)]


@pytest.mark.parametrize("members", BATCHES)
def test_pad_batch_sizes_and_masks(graphs, members):
    """pad_batch sizes exceed the real ones; padding_masks count exactly the real entries."""
    policy = BucketPolicy()
    chosen = [graphs[k] for k in members]
    padded, real = pad_batch(chosen, policy)
    want_real = np.sum([np.array(g.sizes) for g in chosen], axis=0)
    assert tuple(real) == tuple(int(x) for x in want_real)
    p = padded.sizes
    assert p.n_node >= real.n_node + 1 and p.n_edge >= real.n_edge + 2
    assert p.n_bond >= real.n_bond + 1 and p.n_angle >= real.n_angle + 1
    assert p.n_graph >= real.n_graph + 1
    for field, size in p._asdict().items():
        if field != "n_graph":
            assert size % policy.multiple == 0, field
    masks = padding_masks(jax.tree_util.tree_map(jnp.asarray, padded))
    for mask_name, field in [
        ("graph", "n_graph"),
        ("node", "n_node"),
        ("edge", "n_edge"),
        ("bond", "n_bond"),
        ("angle", "n_angle"),
    ]:
        mask = np.asarray(masks[mask_name])
        assert mask.shape == (getattr(p, field),)
        n = getattr(real, field)
        # real entries first, then padding
        np.testing.assert_array_equal(mask, np.arange(mask.size) < n, err_msg=mask_name)


def _per_graph_sums(padded):
    """Per-graph sums (masked and unmasked) of distances, positions, cosines; counts of entries."""
    a, b = padded.atoms, padded.bonds
    n_graph = a.n_node.shape[0]
    masks = padding_masks(padded)
    node_graph = jnp.repeat(
        jnp.arange(n_graph), a.n_node, total_repeat_length=a.nodes["positions"].shape[0]
    )
    edge_graph = jnp.repeat(jnp.arange(n_graph), a.n_edge, total_repeat_length=a.senders.shape[0])
    angle_graph = jnp.repeat(jnp.arange(n_graph), b.n_edge, total_repeat_length=b.senders.shape[0])
    vec = edge_vectors(a, jnp)
    dist = jnp.linalg.norm(vec, axis=-1)
    v1, v2 = vec[b.edges["edge_ij"]], vec[b.edges["edge_ik"]]
    cos = jnp.sum(v1 * v2, axis=-1) / (jnp.linalg.norm(v1, axis=-1) * jnp.linalg.norm(v2, axis=-1))
    seg = jax.ops.segment_sum
    return dict(
        dist=seg(dist * masks["edge"], edge_graph, n_graph),
        dist_unmasked=seg(dist, edge_graph, n_graph),
        pos=seg(a.nodes["positions"] * masks["node"][:, None], node_graph, n_graph),
        cos=seg(cos * masks["angle"], angle_graph, n_graph),
        cos_unmasked=seg(cos, angle_graph, n_graph),
        n_edges=seg(masks["edge"].astype(jnp.int32), edge_graph, n_graph),
        n_angles=seg(masks["angle"].astype(jnp.int32), angle_graph, n_graph),
        dist_all=dist,
        cos_all=cos,
        masks=masks,
    )


_per_graph_sums_jit = jax.jit(_per_graph_sums)


@pytest.fixture(scope="module")
def common_sizes(graphs):
    """One bucket that fits every batch of BATCHES (so jit compiles once)."""
    policy = BucketPolicy(multiple=8, minimum=8)
    return max_sizes(pad_batch([graphs[k] for k in m], policy)[0].sizes for m in BATCHES)


@pytest.mark.parametrize("members", BATCHES)
def test_padding_never_contributes_to_segment_sums(graphs, reference_sums, common_sizes, members):
    """Masked per-graph sums on the padded batch equal ase-based sums of each structure alone."""
    padded, real = pad_batch([graphs[k] for k in members], BucketPolicy(), sizes=common_sizes)
    sums = _per_graph_sums_jit(jax.tree_util.tree_map(jnp.asarray, padded))
    n_real = real.n_graph
    for slot, k in enumerate(members):
        ref = reference_sums[k]
        tol = dict(rtol=1e-4, atol=1e-3)  # jax computes in float32
        np.testing.assert_allclose(sums["dist"][slot], ref["dist"], **tol)
        np.testing.assert_allclose(sums["dist_unmasked"][slot], ref["dist"], **tol)
        np.testing.assert_allclose(sums["pos"][slot], ref["pos"], **tol)
        np.testing.assert_allclose(sums["cos"][slot], ref["cos"], **tol)
        np.testing.assert_allclose(sums["cos_unmasked"][slot], ref["cos"], **tol)
        assert int(sums["n_edges"][slot]) == ref["n_edges"]
        assert int(sums["n_angles"][slot]) == ref["n_angles"]
    # the padding graphs get nothing once masked
    for key in ("dist", "pos", "cos", "n_edges", "n_angles"):
        assert np.all(np.asarray(sums[key][n_real:]) == 0), key


@pytest.mark.parametrize("members", BATCHES)
def test_padding_geometry_is_safe(graphs, members):
    """Every edge vector of the padded batch is finite and non-zero; padding angles are not 0/180 deg."""
    padded, _ = pad_batch([graphs[k] for k in members], BucketPolicy())
    vec = edge_vectors(padded.atoms)  # numpy, float64
    assert np.isfinite(vec).all()
    assert np.linalg.norm(vec, axis=1).min() > 1e-4
    b = padded.bonds
    v1, v2 = vec[b.edges["edge_ij"]], vec[b.edges["edge_ik"]]
    cos = np.sum(v1 * v2, axis=1) / (np.linalg.norm(v1, axis=1) * np.linalg.norm(v2, axis=1))
    pad_angles = ~np.asarray(padding_masks(padded)["angle"])
    assert pad_angles.any()
    assert np.isfinite(cos).all()
    assert np.abs(cos[pad_angles]).max() < 0.99
    # every index field points inside its array
    s = padded.sizes
    for arr, bound in [
        (padded.atoms.senders, s.n_node),
        (padded.atoms.receivers, s.n_node),
        (b.edges["center"], s.n_node),
        (b.edges["edge_ij"], s.n_edge),
        (b.edges["edge_ik"], s.n_edge),
        (b.nodes["edge"], s.n_edge),
        (b.senders, s.n_bond),
        (b.receivers, s.n_bond),
    ]:
        assert arr.min() >= 0 and arr.max() < bound


def test_padded_batch_under_jit(graphs, reference_sums, common_sizes):
    """A padded batch is a jit argument: finite gradients, padding atoms feel no force, one trace per bucket."""
    sizes = common_sizes
    traces = []

    def energy(positions, graph):
        atoms = graph.atoms._replace(nodes={**graph.atoms.nodes, "positions": positions})
        sums = _per_graph_sums(graph._replace(atoms=atoms))
        return jnp.sum(sums["dist"]) + jnp.sum(sums["cos"])

    @jax.jit
    def step(graph):
        traces.append(1)
        sums = _per_graph_sums(graph)
        grad = jax.grad(energy)(graph.atoms.nodes["positions"], graph)
        return sums["dist"], sums["cos"], grad

    for members in BATCHES:
        padded, _ = pad_batch([graphs[k] for k in members], BucketPolicy(), sizes=sizes)
        padded = jax.tree_util.tree_map(jnp.asarray, padded)
        dist, cos, grad = step(padded)
        for slot, k in enumerate(members):
            np.testing.assert_allclose(dist[slot], reference_sums[k]["dist"], rtol=1e-4)
            np.testing.assert_allclose(cos[slot], reference_sums[k]["cos"], rtol=1e-4, atol=1e-3)
        assert np.isfinite(np.asarray(grad)).all()
        n_real = int(np.sum(padded.atoms.n_node[: len(members)]))
        assert np.all(np.asarray(grad)[n_real:] == 0)  # padding atoms feel no force
    assert len(traces) == 1


# ---------------------------------------------------------------------------------------------
# BucketPolicy


def _bucket_set(policy: BucketPolicy, limit: int) -> np.ndarray:
    """All bucket sizes up to beyond ``limit``, from the documented rule round_up(min * g**k)."""
    out, k = set(), 0
    while True:
        size = -(-math.ceil(policy.minimum * policy.growth**k) // policy.multiple) * policy.multiple
        out.add(size)
        if size > limit:
            return np.array(sorted(out))
        k += 1


@pytest.mark.parametrize(
    "policy",
    [
        BucketPolicy(),
        BucketPolicy(growth=1.1, multiple=8, minimum=8),
        BucketPolicy(growth=2.0, multiple=2, minimum=1),
        BucketPolicy(growth=1.5, multiple=32, minimum=100),
    ],
    ids=["default", "g1.1", "g2", "g1.5"],
)
def test_bucket_rounding(policy):
    """round(n) is the smallest documented bucket >= n: a multiple of `multiple`, monotone in n."""
    n = np.arange(1, 10001)
    got = np.array([policy.round(int(k)) for k in n])
    buckets = _bucket_set(policy, 10000)
    want = buckets[np.searchsorted(buckets, n, side="left")]
    np.testing.assert_array_equal(got, want)
    assert np.all(got >= n)
    assert np.all(got % policy.multiple == 0)
    assert np.all(np.diff(got) >= 0)


def test_bucket_count_is_small():
    """With growth 1.25 the sizes 1..10000 fall into fewer than 45 buckets, each wasting < 25% beyond n > 100."""
    policy = BucketPolicy(growth=1.25)
    n = np.arange(1, 10001)
    got = np.array([policy.round(int(k)) for k in n])
    assert len(np.unique(got)) < 45
    big = n > 100
    assert np.max(got[big] / n[big]) < 1.25 + policy.multiple / 100


def test_sizes_for_fixed_graphs():
    """fixed_graphs pins n_graph to fixed_graphs + 1 and rejects bigger batches; other dims >= real + extra."""
    policy = BucketPolicy(fixed_graphs=8)
    real = GraphSizes(n_node=100, n_edge=3000, n_bond=200, n_angle=5000, n_graph=5)
    sizes = policy.sizes_for(real)
    assert sizes.n_graph == 9
    assert (
        sizes.n_node >= 101
        and sizes.n_edge >= 3002
        and sizes.n_bond >= 201
        and sizes.n_angle >= 5001
    )
    with pytest.raises(ValueError):
        policy.sizes_for(real._replace(n_graph=9))


@pytest.mark.parametrize("kwargs", [dict(growth=1.0), dict(multiple=3), dict(multiple=0)])
def test_bucket_policy_rejects_bad_parameters(kwargs):
    """BucketPolicy raises ValueError for growth <= 1 or an odd / too small multiple."""
    with pytest.raises(ValueError):
        BucketPolicy(**kwargs)
