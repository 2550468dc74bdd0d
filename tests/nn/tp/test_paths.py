"""`paths` / `num_weights` against an independent enumeration, the non-zero output blocks of each kind, and the module's parameter count."""

from __future__ import annotations

import itertools

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tp_helpers import blocks, triangle_paths

from equijax.nn import tp

ALL = [e3nn.Irrep(ir) for ir in ("0e", "0o", "1o", "1e", "2e", "2o", "3o", "3e")]
C = 2


def expected_paths(kind, irreps1, irreps2, irreps_out=None) -> list:
    """e3nn's loop order over the regrouped inputs: ir1, then ir2, then ir3 by ascending l."""
    keep = None if irreps_out is None else {ir for _, ir in e3nn.Irreps(irreps_out)}
    out = []
    for _, ir1 in e3nn.Irreps(irreps1).regroup():
        for _, ir2 in e3nn.Irreps(irreps2).regroup():
            for ir3 in triangle_paths(ir1, ir2, odd_allowed=kind in ("cg", "vector_gaunt")):
                if keep is None or ir3 in keep:
                    out.append(tp.CouplingPath(ir1, ir2, ir3))
    return out


@pytest.mark.parametrize("kind", tp.KINDS)
def test_paths_match_enumeration(kind):
    everything = e3nn.Irreps(ALL)
    assert tp.paths(kind, everything, everything) == expected_paths(kind, everything, everything)
    for irreps_out in ("0e + 1e + 3o", "2o", "6e + 5o"):
        assert tp.paths(kind, everything, everything, irreps_out) == expected_paths(
            kind, everything, everything, irreps_out
        )
    # multiplicities and order are ignored
    assert tp.paths(kind, "2x1o + 3x0e + 1o", "4x2e") == expected_paths(kind, "0e + 1o", "2e")
    for ir1, ir2 in itertools.product(ALL, ALL):
        for p in tp.paths(kind, ir1, ir2):
            assert p.odd == bool((ir1.l + ir2.l + p.ir_out.l) % 2)
            assert p.ir_out.p == ir1.p * ir2.p
            assert str(p) == f"{ir1} x {ir2} -> {p.ir_out}"


@pytest.mark.parametrize("kind", tp.KINDS)
def test_nonzero_blocks_are_the_paths(kind):
    """Float64. x1 = C x ALL, x2 = 1 x ALL with only ir1 and ir2 non-zero (random), all 64 pairs
    (ir1, ir2) in one batch: the non-zero output blocks are exactly the ir_out of paths(kind, ir1, ir2)."""
    rng = np.random.default_rng(0)
    irreps1, irreps2 = (e3nn.Irreps(ALL) * C).regroup(), e3nn.Irreps(ALL)
    pairs = list(itertools.product(ALL, ALL))
    a1 = np.zeros((len(pairs), irreps1.dim))
    a2 = np.zeros((len(pairs), irreps2.dim))
    for b, (ir1, ir2) in enumerate(pairs):
        for irreps, a, ir in ((irreps1, a1, ir1), (irreps2, a2, ir2)):
            for (_, ir_k), sl in zip(irreps, irreps.slices()):
                if ir_k == ir:
                    a[b, sl] = rng.normal(size=sl.stop - sl.start)
    with jax.enable_x64(True):
        x1 = e3nn.IrrepsArray(irreps1, jnp.asarray(a1))
        x2 = e3nn.IrrepsArray(irreps2, jnp.asarray(a2))
        y = jax.jit(lambda a, b: tp.tensor_product(kind, a, b))(x1, x2)
        assert y.dtype == jnp.float64
    out = blocks(y)
    for b, (ir1, ir2) in enumerate(pairs):
        norms = {ir: np.linalg.norm(v[b]) for ir, v in out.items()}
        nonzero = {ir for ir, n in norms.items() if n > 1e-6}
        tiny = max((n for n in norms.values() if n <= 1e-6), default=0.0)
        assert tiny < 1e-9, (ir1, ir2, tiny)  # float64: anything else is rounding
        realized = {p.ir_out for p in tp.paths(kind, ir1, ir2)}
        assert nonzero == realized, (kind, ir1, ir2)


# --- num_weights against the module ---------------------------------------------------------

NUM_WEIGHT_CASES = [
    ("2x0e + 2x1o + 2x2e", "0e + 1o", None),
    ("3x0e + 3x1e + 3x2o", "1o + 2e", "0e + 1o + 1e + 3o + 5e"),  # 5e: unrealizable (zero block)
    ("2x1o", "1o", "1e"),  # the cross product: no Gaunt path (module output is a zero block)
    ("2x0e + 2x1o", "2x0e + 2x1o + 2x2e", "0e + 1o + 2e"),  # x2 channelwise (Gaunt kinds only)
]


def _param_count(kind, weights, irreps1, irreps2, irreps_out) -> int:
    x1 = e3nn.IrrepsArray(irreps1, jnp.zeros((2, e3nn.Irreps(irreps1).dim)))
    x2 = e3nn.IrrepsArray(irreps2, jnp.zeros((2, e3nn.Irreps(irreps2).dim)))
    module = tp.TensorProduct(kind=kind, irreps_out=irreps_out, weights=weights)
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), x1, x2)
    return sum(int(np.prod(s.shape)) for s in jax.tree_util.tree_leaves(shapes))


@pytest.mark.parametrize("weights", ["per_path", "per_channel", "none"])
@pytest.mark.parametrize("kind", tp.KINDS)
def test_num_weights_is_the_module_parameter_count(kind, weights):
    for irreps1, irreps2, irreps_out in NUM_WEIGHT_CASES:
        if kind == "cg" and e3nn.Irreps(irreps2).regroup()[0].mul != 1:
            continue  # the CG module takes x2 with multiplicity 1
        if kind != "cg" and irreps_out == "1e":
            continue  # nothing to realize
        if weights == "per_path" and kind != "cg":
            with pytest.raises(ValueError, match="per_path"):
                tp.num_weights(kind, irreps1, irreps2, irreps_out, weights)
            with pytest.raises(ValueError, match="per_path"):
                _param_count(kind, weights, irreps1, irreps2, irreps_out)
            continue
        count = _param_count(kind, weights, irreps1, irreps2, irreps_out)
        assert tp.num_weights(kind, irreps1, irreps2, irreps_out, weights) == count
        if weights == "none":
            assert count == 0
        if weights == "per_path":
            channels = e3nn.Irreps(irreps1).regroup()[0].mul
            assert count == channels * len(expected_paths(kind, irreps1, irreps2, irreps_out))


def test_unknown_kind_and_weights_are_value_errors():
    x = e3nn.IrrepsArray("2x0e + 2x1o", jnp.zeros((1, 8)))
    y = e3nn.IrrepsArray("0e + 1o", jnp.zeros((1, 4)))
    for call in (
        lambda: tp.paths("bogus", "0e", "0e"),
        lambda: tp.num_weights("bogus", "0e", "0e", None),
        lambda: tp.grid_resolution("bogus", "0e", "0e"),
        lambda: tp.tensor_product("bogus", x, y),
        lambda: tp.TensorProduct(kind="bogus").init(jax.random.PRNGKey(0), x, y),
    ):
        with pytest.raises(ValueError, match="bogus"):
            call()
    with pytest.raises(ValueError, match="weights"):
        tp.num_weights("cg", "0e", "0e", None, "per_irrep")
    with pytest.raises(ValueError, match="weights"):
        tp.TensorProduct(kind="cg", weights="per_irrep").init(jax.random.PRNGKey(0), x, y)
    assert tp.KINDS == ("cg", "gaunt_grid", "gaunt_fourier", "vector_gaunt")
