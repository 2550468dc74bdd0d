"""`clebsch_gordan` against `e3nn.tensor_product` (same irreps, same array)."""

from __future__ import annotations

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tp_helpers import irreps_array

from equijax.nn import tp

# name: (irreps1, irreps2, lead1, lead2, keyword arguments). x2 with multiplicity 1 everywhere
# takes the channelwise branch of clebsch_gordan, otherwise the outer-product branch (`_outer_blocks`).
CASES = {
    "x2_mul1": ("2x0e + 3x1o + 2x2e", "0e + 1o + 2e", (4,), (4,), {}),
    "x2_multiplicities": ("2x0e + 1x1o + 1x2e", "2x1o + 0e + 3x0e", (3,), (3,), {}),
    "mixed_parities": ("1x0o + 2x1e + 1x2o", "1o + 0o + 1e", (2,), (2,), {}),
    "unsorted_repeated": ("1x1o + 2x0e + 1x1o + 1x0e", "1o + 0e", (2,), (2,), {}),
    "filter": ("2x1o + 2x2e", "0e + 1o + 2e", (3,), (3,), {"filter_ir_out": "0e + 1e + 2e + 3o"}),
    "filter_outer": (
        "2x1o + 1x2e",
        "2x1o + 1x1e",
        (2,),
        (2,),
        {"filter_ir_out": ["1e", "2o", "0e"]},
    ),
    "broadcast": ("2x0e + 2x1o", "0e + 1o + 2e", (2, 1, 3), (4, 1), {}),
    "broadcast_outer": ("1x0e + 2x1o", "2x1o", (2, 1), (3,), {}),
    "scalar_lead": ("3x1o + 1x2e", "1o", (), (), {}),
    "zero_chunk": ("2x0e + 2x1o", "0e + 1o", (2,), (2,), {}),  # x1's 0e chunk is None (zeros)
    "zero_chunk_outer": ("2x0e + 2x1o", "2x1o", (2,), (2,), {}),
    "default_normalization": ("2x1o + 1x2e", "1o + 1e", (2,), (2,), {}),  # e3nn.config's
}
for _norm in ("norm", "component", "none"):
    CASES[_norm] = ("2x1o + 1x2e", "1o", (2,), (2,), {"irrep_normalization": _norm})
    CASES[_norm + "_outer"] = ("1x1o", "2x1o", (2,), (2,), {"irrep_normalization": _norm})


def _e3nn_kwargs(kwargs):
    """The same options spelled for e3nn.tensor_product (filter: a list of Irrep)."""
    out = dict(kwargs)
    filt = out.get("filter_ir_out")
    if filt is not None:
        out["filter_ir_out"] = (
            [ir for _, ir in e3nn.Irreps(filt)]
            if isinstance(filt, str)
            else [e3nn.Irrep(i) for i in filt]
        )
    out.setdefault("irrep_normalization", e3nn.config("irrep_normalization"))
    return out


def _reference(x1, x2, **kwargs):
    lead = jnp.broadcast_shapes(x1.shape[:-1], x2.shape[:-1])
    x1 = e3nn.IrrepsArray(x1.irreps, jnp.broadcast_to(x1.array, lead + (x1.irreps.dim,)))
    x2 = e3nn.IrrepsArray(x2.irreps, jnp.broadcast_to(x2.array, lead + (x2.irreps.dim,)))
    return e3nn.tensor_product(x1, x2, **kwargs)


def _prepare(inputs):
    """Inside the jit: None (zero) chunks where a case asks for them."""
    out = dict(inputs)
    for k in ("zero_chunk", "zero_chunk_outer"):
        x1, x2 = inputs[k]
        out[k] = (e3nn.from_chunks(x1.irreps, [None, x1.chunks[1]], x1.shape[:-1], x1.dtype), x2)
    return out


def test_matches_e3nn():
    """Every case of CASES: same irreps, same shape, same values. One jit per side for all cases
    (XLA compiles dominate the run time), one test so pytest-xdist never computes them twice."""
    rng = np.random.default_rng(0)
    inputs = {
        name: (irreps_array(rng, i1, l1), irreps_array(rng, i2, l2))
        for name, (i1, i2, l1, l2, _) in CASES.items()
    }
    got = jax.jit(
        lambda inputs: {
            k: tp.clebsch_gordan(*x, **CASES[k][4]) for k, x in _prepare(inputs).items()
        }
    )(inputs)
    want = jax.jit(
        lambda inputs: {
            k: _reference(*x, **_e3nn_kwargs(CASES[k][4])) for k, x in _prepare(inputs).items()
        }
    )(inputs)
    failures = []
    for name in CASES:
        g, w = got[name], want[name]
        if g.irreps != w.irreps or g.shape != w.shape:
            failures.append(f"{name}: {g.irreps} {g.shape} != e3nn {w.irreps} {w.shape}")
        elif not np.allclose(np.asarray(g.array), np.asarray(w.array), rtol=1e-5, atol=1e-5):
            failures.append(f"{name}: max |diff| {np.abs(np.asarray(g.array - w.array)).max():.3g}")
    assert not failures, "\n".join(failures)


def test_float64_inputs_keep_dtype():
    with jax.enable_x64(True):
        rng = np.random.default_rng(10)
        x1, x2 = irreps_array(rng, "1x1o", (2,)), irreps_array(rng, "1o", (2,))
        got = tp.clebsch_gordan(x1, x2)
        assert got.dtype == jnp.float64
        want = e3nn.tensor_product(x1, x2)
        assert got.irreps == want.irreps
        np.testing.assert_allclose(
            np.asarray(got.array), np.asarray(want.array), rtol=1e-12, atol=1e-12
        )


def test_not_irreps_array_is_type_error():
    x = irreps_array(np.random.default_rng(0), "0e + 1o", (2,))
    with pytest.raises(TypeError, match="x1"):
        tp.clebsch_gordan(x.array, x)
    with pytest.raises(TypeError, match="x2"):
        tp.clebsch_gordan(x, np.asarray(x.array))


def test_filter_removing_everything_is_value_error():
    rng = np.random.default_rng(0)
    x1, x2 = irreps_array(rng, "2x0e + 1x1o", (2,)), irreps_array(rng, "1o", (2,))
    with pytest.raises(ValueError, match="filter_ir_out"):
        tp.clebsch_gordan(x1, x2, filter_ir_out="3e + 0o")
    with pytest.raises(ValueError, match="filter_ir_out"):
        tp.clebsch_gordan(x1, irreps_array(rng, "2x1o", (2,)), filter_ir_out=["5e"])


def test_bad_normalization_and_leading_shapes_are_value_errors():
    rng = np.random.default_rng(0)
    x1, x2 = irreps_array(rng, "2x1o", (2,)), irreps_array(rng, "1o", (3,))
    with pytest.raises(ValueError, match="do not broadcast"):
        tp.clebsch_gordan(x1, x2)
    with pytest.raises(ValueError, match="irrep_normalization"):
        tp.clebsch_gordan(x1, irreps_array(rng, "1o", (2,)), irrep_normalization="bogus")
