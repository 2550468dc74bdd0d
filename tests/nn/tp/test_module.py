"""`TensorProduct` against the plain product functions with the documented weighting applied by hand."""

from __future__ import annotations

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tp_helpers import blocks, irreps_array

from equijax.nn import tp

C = 2
IRREPS1 = (e3nn.Irreps("0e + 1o + 1e + 2e") * C).regroup()
IRREPS2 = e3nn.Irreps("0e + 1o")
# 1e: the odd path 1o x 1o (cg, vector_gaunt only) plus the even 1e x 0e; 0o: 1e x 1o; 3o: 2e x 1o;
# 3e: no kind realizes it (a zero block)
IRREPS_OUT = e3nn.Irreps("0e + 0o + 1o + 1e + 2e + 3o + 3e")


def _random_params(module, x1, x2, seed):
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), x1, x2)
    return jax.tree_util.tree_map(lambda s: jnp.asarray(rng.normal(size=s.shape), s.dtype), shapes)


def _ones(module, x1, x2):
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), x1, x2)
    return jax.tree_util.tree_map(lambda s: jnp.ones(s.shape, s.dtype), shapes)


def _summed_paths(kind, x1, x2, irreps_out, path_weights=None) -> dict:
    """{Irrep: (..., C, d)} of the plain product per output irrep (traceable, so it runs inside the
    test's jit): the Gaunt kinds' own output; for "cg" the channelwise paths into each irrep (one
    `clebsch_gordan` per path on the single-irrep inputs), summed with ``path_weights[i]`` (C,) for
    path i of `tp.paths` and then (per_path weights only) 1/√(number of paths into the irrep)."""
    if kind != "cg":
        out = tp.tensor_product(kind, x1, x2, filter_ir_out=irreps_out)
        return {ir: c for (_, ir), c in zip(out.irreps, out.chunks)}
    realized = tp.paths(kind, x1.irreps, x2.irreps, irreps_out)
    count = {}
    for p in realized:
        count[p.ir_out] = count.get(p.ir_out, 0) + 1
    out = {}
    for i, p in enumerate(realized):
        block = tp.clebsch_gordan(
            x1.filter(keep=[p.ir1]), x2.filter(keep=[p.ir2]), filter_ir_out=[p.ir_out]
        ).chunks[0]
        if path_weights is not None:
            block = block * path_weights[i][:, None] / np.sqrt(count[p.ir_out])
        out[p.ir_out] = block if p.ir_out not in out else out[p.ir_out] + block
    return out


def _assert_blocks(out: e3nn.IrrepsArray, want: dict, irreps_out):
    assert out.irreps == e3nn.Irreps(irreps_out) * C
    got = blocks(out)
    for _, ir in e3nn.Irreps(irreps_out):
        ref = want.get(ir)
        if ref is None:
            np.testing.assert_array_equal(got[ir], 0.0, err_msg=f"{ir} must be a zero block")
        else:
            ref = np.asarray(ref, np.float64)
            np.testing.assert_allclose(
                got[ir], np.broadcast_to(ref, got[ir].shape), rtol=1e-5, atol=1e-5, err_msg=str(ir)
            )


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    return irreps_array(rng, IRREPS1, (3,)), irreps_array(rng, IRREPS2, (3,))


@pytest.mark.parametrize("kind", tp.KINDS)
def test_weightings_against_plain_product(inputs, kind):
    """weights="none": the plain product per output irrep; per_channel with all-ones parameters:
    the same; per_channel with random parameters: w_out · product(w_in1 · x1, w_in2 · x2)."""
    x1, x2 = inputs
    none = tp.TensorProduct(kind=kind, irreps_out=IRREPS_OUT, weights="none")
    per_channel = tp.TensorProduct(kind=kind, irreps_out=IRREPS_OUT, weights="per_channel")
    ones, params = _ones(per_channel, x1, x2), _random_params(per_channel, x1, x2, seed=1)

    def run(ones, params, x1, x2):
        p = params["params"]
        scaled1 = e3nn.from_chunks(
            x1.irreps,
            [c * w[:, None] for c, w in zip(x1.chunks, p["w_in1"])],
            x1.shape[:-1],
            x1.dtype,
        )
        scaled2 = e3nn.from_chunks(
            x2.irreps, [c * w for c, w in zip(x2.chunks, p["w_in2"])], x2.shape[:-1], x2.dtype
        )
        want = _summed_paths(kind, scaled1, scaled2, IRREPS_OUT)
        index = {ir: i for i, (_, ir) in enumerate(IRREPS_OUT)}
        want = {ir: v * p["w_out"][index[ir]][:, None] for ir, v in want.items()}
        return (
            none.apply({}, x1, x2),
            per_channel.apply(ones, x1, x2),
            per_channel.apply(params, x1, x2),
            _summed_paths(kind, x1, x2, IRREPS_OUT),
            want,
        )

    p = params["params"]
    assert p["w_in1"].shape == (len(IRREPS1), C) and p["w_in2"].shape == (len(IRREPS2),)
    assert p["w_out"].shape == (len(IRREPS_OUT), C)
    out_none, out_ones, out_random, plain, want = jax.jit(run)(ones, params, x1, x2)
    _assert_blocks(out_none, plain, IRREPS_OUT)
    np.testing.assert_allclose(
        np.asarray(out_ones.array), np.asarray(out_none.array), rtol=1e-6, atol=1e-6
    )
    _assert_blocks(out_random, want, IRREPS_OUT)


def test_cg_per_path_weights(inputs):
    """Weight i multiplies path i of `tp.paths` (channelwise), paths into one irrep summed."""
    x1, x2 = inputs
    module = tp.TensorProduct(kind="cg", irreps_out=IRREPS_OUT, weights="per_path")
    params = _random_params(module, x1, x2, seed=2)
    w = params["params"]["w_path"]
    assert w.shape == (len(tp.paths("cg", x1.irreps, x2.irreps, IRREPS_OUT)), C)
    out, want = jax.jit(
        lambda params, x1, x2: (
            module.apply(params, x1, x2),
            _summed_paths("cg", x1, x2, IRREPS_OUT, path_weights=params["params"]["w_path"]),
        )
    )(params, x1, x2)
    _assert_blocks(out, want, IRREPS_OUT)


def test_default_irreps_out_is_every_realized_irrep(inputs):
    x1, x2 = inputs
    for kind in tp.KINDS:
        module = tp.TensorProduct(kind=kind, weights="none")
        out = jax.eval_shape(module.apply, {}, x1, x2)
        realized = sorted({p.ir_out for p in tp.paths(kind, x1.irreps, x2.irreps)})
        assert out.irreps == e3nn.Irreps([(C, ir) for ir in realized]), kind
        assert out.shape == (3, out.irreps.dim)


def test_channelwise_x2():
    """x2 with multiplicity C: each channel of x1 meets its own channel of x2 (Gaunt kinds)."""
    rng = np.random.default_rng(3)
    x1 = irreps_array(rng, IRREPS1, (2,))
    x2 = irreps_array(rng, (IRREPS2 * C).regroup(), (2,))
    irreps_out = "0e + 1o + 1e + 2e"
    outs = jax.jit(
        lambda x1, x2: [
            (
                tp.TensorProduct(kind=k, irreps_out=irreps_out, weights="none").apply({}, x1, x2),
                _summed_paths(k, x1, x2, irreps_out),
            )
            for k in tp.KINDS[1:]
        ]
    )(x1, x2)
    for out, want in outs:
        _assert_blocks(out, want, irreps_out)
    with pytest.raises(ValueError, match="multiplicity 1"):
        tp.TensorProduct(kind="cg", irreps_out=irreps_out, weights="none").apply({}, x1, x2)


def test_per_path_needs_cg(inputs):
    x1, x2 = inputs
    for kind in tp.KINDS[1:]:
        with pytest.raises(ValueError, match="per_path"):
            tp.TensorProduct(kind=kind, weights="per_path").init(jax.random.PRNGKey(0), x1, x2)


@pytest.mark.parametrize("kind", ["gaunt_grid", "gaunt_fourier"])
def test_unrealizable_irreps_out_gives_zero_blocks(kind):
    """1o x 1o -> 1e is the cross product: no Gaunt path; the module must still return C x 1e zeros."""
    rng = np.random.default_rng(4)
    x1, x2 = irreps_array(rng, "2x1o", (2,)), irreps_array(rng, "1o", (2,))
    out = tp.TensorProduct(kind=kind, irreps_out="1e", weights="none").apply({}, x1, x2)
    assert out.irreps == e3nn.Irreps("2x1e")
    np.testing.assert_array_equal(np.asarray(out.array), 0.0)


def test_unequal_multiplicities_are_a_clear_error():
    rng = np.random.default_rng(5)
    x1, x2 = irreps_array(rng, "2x0e + 3x1o", (2,)), irreps_array(rng, "0e + 1o", (2,))
    for kind in tp.KINDS:
        with pytest.raises(ValueError, match="one multiplicity"):
            tp.TensorProduct(kind=kind, weights="per_channel").init(jax.random.PRNGKey(0), x1, x2)
        with pytest.raises(ValueError, match="one multiplicity"):
            tp.num_weights(kind, x1.irreps, x2.irreps, "0e", "per_channel")


def test_tensor_product_dispatch(inputs):
    x1, x2 = inputs
    fns = {
        "cg": tp.clebsch_gordan,
        "gaunt_grid": tp.gaunt_s2grid,
        "gaunt_fourier": tp.gaunt_fourier,
        "vector_gaunt": tp.vector_gaunt,
    }
    for kind, fn in fns.items():
        a = jax.eval_shape(
            lambda x1, x2, kind=kind: tp.tensor_product(kind, x1, x2, filter_ir_out="1o"), x1, x2
        )
        b = jax.eval_shape(lambda x1, x2, fn=fn: fn(x1, x2, filter_ir_out="1o"), x1, x2)
        assert a.irreps == b.irreps and a.shape == b.shape, kind
