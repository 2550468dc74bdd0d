"""`equijax.nn.uvu` against independent references: e3nn (torch)'s "uvu" ``TensorProduct`` built as
NequIP / SevenNet build their convolutions, a plain gather + segment_sum of the per-edge product
for the chunked convolution, and rotations of the inputs for the Gaunt kind."""

from __future__ import annotations

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from e3nn import o3

from equijax.nn.uvu import (
    e3nn_torch_order,
    uvu_convolution,
    uvu_irreps_out,
    uvu_num_weights,
    uvu_paths,
    uvu_tensor_product,
)

pytestmark = pytest.mark.usefixtures("fast_compiles")

# (irreps of x, irreps of the harmonics): O(3) with natural parities, and all-even (SO(3) only)
CASES = {
    "o3": ("4x0e+3x1o+2x2e", "0e+1o+2e"),
    "so3": ("4x0e+3x1e+2x2e", "0e+1e+2e"),
}
LMAX_OUT = 2


def _torch_uvu(irreps_x: str, irreps_sh: str, lmax_out: int) -> o3.TensorProduct:
    """The "uvu" product exactly as e3nn convolutions (SevenNet, NequIP) build it."""
    irreps_x, irreps_sh = o3.Irreps(irreps_x), o3.Irreps(irreps_sh)
    irreps_mid, instructions = [], []
    for i, (mul, ir_x) in enumerate(irreps_x):
        for j, (_, ir_sh) in enumerate(irreps_sh):
            for ir_out in ir_x * ir_sh:
                if ir_out.l <= lmax_out:
                    k = len(irreps_mid)
                    irreps_mid.append((mul, ir_out))
                    instructions.append((i, j, k, "uvu", True))
    irreps_mid, p, _ = o3.Irreps(irreps_mid).sort()
    instructions = [(i, j, p[k], mode, train) for i, j, k, mode, train in instructions]
    instructions = sorted(instructions, key=lambda ins: ins[2])
    return o3.TensorProduct(
        irreps_x,
        irreps_sh,
        irreps_mid,
        instructions,
        shared_weights=False,
        internal_weights=False,
    )


def _filter(lmax: int) -> list[e3nn.Irrep]:
    """Every irrep with l <= lmax (both parities)."""
    return [e3nn.Irrep(l, p) for l in range(lmax + 1) for p in (1, -1)]


def _random(rng, irreps, lead) -> e3nn.IrrepsArray:
    irreps = e3nn.Irreps(irreps)
    return e3nn.IrrepsArray(irreps, jnp.asarray(rng.normal(size=lead + (irreps.dim,)), jnp.float32))


@pytest.mark.parametrize("case", list(CASES))
def test_cg_matches_torch_uvu(case):
    irreps_x, irreps_sh = CASES[case]
    ref = _torch_uvu(irreps_x, irreps_sh, LMAX_OUT)
    path_list = uvu_paths(irreps_x, irreps_sh, _filter(LMAX_OUT), kind="cg")
    assert uvu_irreps_out(path_list) == e3nn.Irreps(str(ref.irreps_out))
    assert uvu_num_weights(path_list) == ref.weight_numel

    rng = np.random.default_rng(0)
    n_edges = 7
    x = _random(rng, irreps_x, (n_edges,))
    sh = _random(rng, irreps_sh, (n_edges,))
    w = jnp.asarray(rng.normal(size=(n_edges, ref.weight_numel)), jnp.float32)
    with torch.no_grad():
        want = ref(
            torch.tensor(np.asarray(x.array)),
            torch.tensor(np.asarray(sh.array)),
            torch.tensor(np.asarray(w)),
        ).numpy()
    got = uvu_tensor_product(x, sh, w, path_list, kind="cg")
    assert got.irreps == uvu_irreps_out(path_list)
    np.testing.assert_allclose(np.asarray(got.array), want, atol=1e-5, rtol=1e-5)


def test_unfiltered_paths_match_torch_irreps():
    """Without a filter every coupling is kept (here up to l = 4)."""
    irreps_x, irreps_sh = CASES["o3"]
    ref = _torch_uvu(irreps_x, irreps_sh, lmax_out=99)
    path_list = uvu_paths(irreps_x, irreps_sh)
    assert uvu_irreps_out(path_list) == e3nn.Irreps(str(ref.irreps_out))
    assert uvu_num_weights(path_list) == ref.weight_numel


def test_unknown_kind_raises():
    with pytest.raises(ValueError, match="kind"):
        uvu_paths("2x0e", "0e", kind="bogus")


N_NODES, N_EDGES, N_PAIRS = 6, 20, 8


@pytest.fixture(scope="module")
def graph():
    irreps_x, irreps_sh = CASES["o3"]
    path_list = uvu_paths(irreps_x, irreps_sh, _filter(LMAX_OUT))
    rng = np.random.default_rng(3)
    return dict(
        path_list=path_list,
        x=_random(rng, irreps_x, (N_NODES,)),
        sh=_random(rng, irreps_sh, (N_EDGES,)),
        weights=jnp.asarray(rng.normal(size=(N_EDGES, uvu_num_weights(path_list))), jnp.float32),
        pair_weights=jnp.asarray(
            rng.normal(size=(N_PAIRS, uvu_num_weights(path_list))), jnp.float32
        ),
        weight_index=jnp.asarray(rng.integers(0, N_PAIRS, N_EDGES), jnp.int32),
        senders=jnp.asarray(rng.integers(0, N_NODES, N_EDGES), jnp.int32),
        receivers=jnp.asarray(rng.integers(0, N_NODES, N_EDGES), jnp.int32),
    )


def _reference_convolution(g, x_array, weights):
    x = e3nn.IrrepsArray(g["x"].irreps, x_array)
    messages = uvu_tensor_product(x[g["senders"]], g["sh"], weights, g["path_list"])
    return jax.ops.segment_sum(messages.array, g["receivers"], N_NODES)


def _convolution(g, x_array, weights, chunk, weight_index=None):
    x = e3nn.IrrepsArray(g["x"].irreps, x_array)
    return uvu_convolution(
        x,
        g["sh"],
        weights,
        g["senders"],
        g["receivers"],
        g["path_list"],
        chunk=chunk,
        weight_index=weight_index,
    )


@pytest.mark.parametrize("chunk", [None, 3, 64])
def test_convolution_matches_segment_sum(graph, chunk):
    want = _reference_convolution(graph, graph["x"].array, graph["weights"])
    got = _convolution(graph, graph["x"].array, graph["weights"], chunk)
    assert got.shape == (N_NODES, uvu_irreps_out(graph["path_list"]).dim)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5, rtol=1e-5)


def test_convolution_gradient_chunked(graph):
    def loss(x_array, chunk):
        return jnp.sum(_convolution(graph, x_array, graph["weights"], chunk) ** 2)

    def reference_loss(x_array):
        return jnp.sum(_reference_convolution(graph, x_array, graph["weights"]) ** 2)

    x_array = graph["x"].array
    want = jax.grad(reference_loss)(x_array)
    for chunk in (None, 3):
        got = jax.grad(loss)(x_array, chunk)
        np.testing.assert_allclose(
            np.asarray(got), np.asarray(want), atol=1e-4, rtol=1e-5, err_msg=f"chunk={chunk}"
        )


@pytest.mark.parametrize("chunk", [None, 3])
def test_weight_index(graph, chunk):
    pair_weights, index = graph["pair_weights"], graph["weight_index"]
    want = _reference_convolution(graph, graph["x"].array, pair_weights[index])
    got = _convolution(graph, graph["x"].array, pair_weights, chunk, weight_index=index)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5, rtol=1e-5)
    gathered = _convolution(graph, graph["x"].array, pair_weights[index], chunk)
    np.testing.assert_allclose(np.asarray(got), np.asarray(gathered), atol=1e-5, rtol=1e-5)


def test_gaunt_uvu_equivariance():
    """kind gaunt_grid: transforming x and the harmonics by g in O(3) transforms the output."""
    irreps_x, irreps_sh = CASES["o3"]
    path_list = uvu_paths(irreps_x, irreps_sh, _filter(LMAX_OUT), kind="gaunt_grid")
    assert uvu_num_weights(path_list) > 0
    rng = np.random.default_rng(5)
    n_edges = 4
    x = _random(rng, irreps_x, (n_edges,))
    sh = _random(rng, irreps_sh, (n_edges,))
    w = jnp.asarray(rng.normal(size=(n_edges, uvu_num_weights(path_list))), jnp.float32)

    group = (((0.7, -1.9, 0.4), 0), ((-2.2, 0.5, 1.3), 1))  # a rotation, a rotoinversion

    def stack(a):
        """[a, g a for g in group] along the edge axis: one product, one compile."""
        moved = [a] + [a.transform_by_angles(*angles, k=k) for angles, k in group]
        return e3nn.IrrepsArray(a.irreps, jnp.concatenate([m.array for m in moved]))

    product = jax.jit(
        lambda x, sh, w: uvu_tensor_product(x, sh, w, path_list, kind="gaunt_grid").array
    )
    outs = np.asarray(product(stack(x), stack(sh), jnp.tile(w, (len(group) + 1, 1))))
    outs = outs.reshape(len(group) + 1, n_edges, -1)
    irreps_out = uvu_irreps_out(path_list)
    scale = np.abs(outs[0]).max()
    assert scale > 1e-2
    base = e3nn.IrrepsArray(irreps_out, jnp.asarray(outs[0]))
    for n, (angles, k) in enumerate(group, 1):
        np.testing.assert_allclose(
            outs[n],
            np.asarray(base.transform_by_angles(*angles, k=k).array),
            atol=1e-4 * max(scale, 1.0),
            err_msg=f"angles={angles} k={k}",
        )


def test_e3nn_torch_order():
    irreps = "2e+2o+0e+0o+1e+1o"
    want = o3.Irreps(irreps).sort().irreps
    got = sorted(e3nn.Irreps(irreps), key=lambda mul_ir: e3nn_torch_order(mul_ir.ir))
    assert e3nn.Irreps(got) == e3nn.Irreps(str(want))
    assert str(e3nn.Irreps(got)) == "1x0o+1x0e+1x1o+1x1e+1x2o+1x2e"
