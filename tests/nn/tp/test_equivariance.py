"""Every kind (function and `TensorProduct`) is O(3)-equivariant: out(D x1, D x2) = D out(x1, x2), D from e3nn's generators."""

from __future__ import annotations

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tp_helpers import (
    apply_representation,
    irreps_array,
    representation,
    rotation_matrix,
    transform,
)

from equijax.nn import tp

C, BATCH = 2, 3
# L: (irreps1 of one channel, irreps2); x1 has both parity classes, both inputs reach lmax L.
# Compile time grows with the pairs of parity classes (Gaunt kinds) and with the number of paths
# (CG), so only L = 1 mixes both classes in x2, and x2 is sparse at large L.
CONFIGS = {
    1: ("0e + 0o + 1o + 1e", "0e + 1o + 1e"),
    2: ("0e + 1o + 1e + 2e + 2o", "0e + 1o + 2e"),
    4: ("0e + 1o + 1e + 2e + 3o + 4e", "1o + 4e"),
    6: ("0e + 2o + 3o + 6e", "1o + 6e"),
}
# g: (log coordinates ω of the rotation, inversion power k)
GROUP = {
    "rotation": (np.array([0.7, -1.9, 0.4]), 0),
    "inversion": (np.zeros(3), 1),
    "rotoinversion": (np.array([-2.2, 0.5, 1.3]), 1),
}


def test_representation_matches_e3nn_harmonics():
    """Sanity of the reference: D_1(ω) is a rotation R of xyz, and Y_l(R r) = D_l(ω) Y_l(r) for
    e3nn's harmonics, so D is e3nn's representation of the geometric rotation."""
    omega = GROUP["rotoinversion"][0]
    r = rotation_matrix(omega)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(r), 1.0)
    irreps = e3nn.Irreps("0e + 1o + 2e + 3o")
    points = np.random.default_rng(0).normal(size=(20, 3))
    sh = jax.jit(lambda v: e3nn.spherical_harmonics(irreps, v, normalize=True).array)
    y = np.asarray(sh(jnp.asarray(points, jnp.float32)))
    y_rot = np.asarray(sh(jnp.asarray(points @ r.T, jnp.float32)))
    np.testing.assert_allclose(y_rot, y @ representation(irreps, omega).T, atol=2e-5)
    # inversion: p^k on (l, p)
    d = representation("0e + 0o + 1o + 1e", np.zeros(3), 1)
    np.testing.assert_array_equal(np.diag(d), [1, -1, -1, -1, -1, 1, 1, 1])


def _stack(x):
    """[x, g x for g in GROUP] stacked on a new leading axis."""
    xs = [x] + [transform(x, omega, k) for omega, k in GROUP.values()]
    return e3nn.IrrepsArray(x.irreps, jnp.stack([v.array for v in xs]))


def _check(out: e3nn.IrrepsArray, context: str = ""):
    """out[0] is the product at x; out[1 + i] at g_i x: must equal D(g_i) out[0]."""
    base = np.asarray(out.array[0], np.float64)
    scale = np.abs(base).max()
    assert scale > 1e-3
    for i, (name, (omega, k)) in enumerate(GROUP.items()):
        want = apply_representation(base, out.irreps, omega, k)
        np.testing.assert_allclose(
            np.asarray(out.array[1 + i]),
            want,
            rtol=0,
            atol=2e-5 * scale,
            err_msg=f"{context} {name}",
        )


@pytest.mark.parametrize("L", list(CONFIGS))
def test_function_equivariance(L):
    """Every kind at this L, in one jit (one compile instead of four)."""
    rng = np.random.default_rng(L)
    irreps1, irreps2 = CONFIGS[L]
    x1 = _stack(irreps_array(rng, e3nn.Irreps(irreps1) * C, (BATCH,)).regroup())
    x2 = _stack(irreps_array(rng, irreps2, (BATCH,)))
    outs = jax.jit(lambda a, b: [tp.tensor_product(kind, a, b) for kind in tp.KINDS])(x1, x2)
    for kind, out in zip(tp.KINDS, outs):
        assert out.irreps.lmax == e3nn.Irreps(irreps1).lmax + e3nn.Irreps(irreps2).lmax, kind
        _check(out, kind)


def test_channelwise_x2_equivariance():
    """x2 with multiplicity C (Gaunt kinds), one jit for the three."""
    rng = np.random.default_rng(5)
    irreps1, irreps2 = CONFIGS[1]
    x1 = _stack(irreps_array(rng, e3nn.Irreps(irreps1) * C, (BATCH,)).regroup())
    x2 = _stack(irreps_array(rng, e3nn.Irreps(irreps2) * C, (BATCH,)).regroup())
    outs = jax.jit(lambda a, b: [tp.tensor_product(kind, a, b) for kind in tp.KINDS[1:]])(x1, x2)
    for kind, out in zip(tp.KINDS[1:], outs):
        _check(out, kind)


def test_module_equivariance():
    """`TensorProduct` of every kind with random (non-unit) weights, one jit; irreps_out includes
    irreps some kinds cannot realize (zero blocks)."""
    rng = np.random.default_rng(6)
    irreps1, irreps2 = CONFIGS[1]
    irreps_out = e3nn.Irreps("0e + 0o + 1o + 1e + 2e + 2o")
    x1 = _stack(irreps_array(rng, e3nn.Irreps(irreps1) * C, (BATCH,)).regroup())
    x2 = _stack(irreps_array(rng, irreps2, (BATCH,)))
    modules, params = [], []
    for kind in tp.KINDS:
        module = tp.TensorProduct(
            kind=kind, irreps_out=irreps_out, weights="per_path" if kind == "cg" else "per_channel"
        )
        shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), x1, x2)
        modules.append(module)
        params.append(
            jax.tree_util.tree_map(lambda s: jnp.asarray(rng.normal(size=s.shape), s.dtype), shapes)
        )
    outs = jax.jit(lambda params, x1, x2: [m.apply(p, x1, x2) for m, p in zip(modules, params)])(
        params, x1, x2
    )
    for kind, out in zip(tp.KINDS, outs):
        assert out.irreps == irreps_out * C, kind
        _check(out, kind)
