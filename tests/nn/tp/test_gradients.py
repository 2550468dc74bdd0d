"""Gradients (and gradients of gradients) of every kind against central finite differences in float64; jit and vmap against eager."""

from __future__ import annotations

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tp_helpers import irreps_array

from equijax.nn import tp

pytestmark = pytest.mark.usefixtures("x64")

C = 2
IRREPS1 = (e3nn.Irreps("0e + 1o + 2e") * C).regroup()  # one parity class: compiles stay small
IRREPS2 = e3nn.Irreps("0e + 1o")
# kind, options: both Fourier convolutions; "auto" picks "direct" for this x2 (lmax 1)
GRAD_CASES = [
    ("cg", {}),
    ("gaunt_grid", {"method": "grid"}),
    ("gaunt_grid", {"method": "operator"}),
    ("gaunt_fourier", {"method": "direct"}),
    ("gaunt_fourier", {"method": "fft"}),
    ("vector_gaunt", {}),
]
EPS = 1e-5


def _loss(kind, **options):
    def f(a1, a2):
        out = tp.tensor_product(
            kind, e3nn.IrrepsArray(IRREPS1, a1), e3nn.IrrepsArray(IRREPS2, a2), **options
        )
        return jnp.sum(out.array**2)

    return f


def _central_differences(fn, a1, a2):
    """(∂fn/∂a1, ∂fn/∂a2) of a scalar ``fn`` for every coordinate, 2 n evaluations in one vmap."""
    n1, n2 = a1.size, a2.size
    basis = np.eye(n1 + n2) * EPS
    d1 = basis[:, :n1].reshape((-1,) + a1.shape)
    d2 = basis[:, n1:].reshape((-1,) + a2.shape)
    plus = jax.vmap(fn)(a1 + d1, a2 + d2)
    minus = jax.vmap(fn)(a1 - d1, a2 - d2)
    g = (plus - minus) / (2 * EPS)
    return g[:n1].reshape(a1.shape), g[n1:].reshape(a2.shape)


@pytest.fixture(scope="module")
def inputs(x64):
    rng = np.random.default_rng(0)
    a1 = np.asarray(irreps_array(rng, IRREPS1, (2,)).array)
    a2 = np.asarray(irreps_array(rng, IRREPS2, (2,)).array)
    assert a1.dtype == np.float64
    return jnp.asarray(a1), jnp.asarray(a2)


@pytest.mark.parametrize(
    "kind,options",
    GRAD_CASES,
    ids=lambda v: v if isinstance(v, str) else "-".join(v.values()) or "default",
)
def test_gradient_matches_finite_differences(inputs, kind, options):
    a1, a2 = inputs
    f = _loss(kind, **options)
    both = jax.jit(
        lambda a1, a2: (jax.grad(f, argnums=(0, 1))(a1, a2), _central_differences(f, a1, a2))
    )
    (g1, g2), (fd1, fd2) = both(a1, a2)
    scale = float(max(jnp.abs(fd1).max(), jnp.abs(fd2).max()))
    np.testing.assert_allclose(np.asarray(g1), np.asarray(fd1), rtol=0, atol=1e-7 * scale)
    np.testing.assert_allclose(np.asarray(g2), np.asarray(fd2), rtol=0, atol=1e-7 * scale)


@pytest.mark.parametrize("kind", ["cg", "gaunt_grid"])
def test_gradient_of_gradient_matches_finite_differences(inputs, kind):
    """h = <∇_{x1} f, w> + <∇_{x2} f, v>; ∇h (second order) against differences of h."""
    a1, a2 = inputs
    f = _loss(kind)
    rng = np.random.default_rng(1)
    w, v = jnp.asarray(rng.normal(size=a1.shape)), jnp.asarray(rng.normal(size=a2.shape))

    def h(a1, a2):
        g1, g2 = jax.grad(f, argnums=(0, 1))(a1, a2)
        return jnp.vdot(g1, w) + jnp.vdot(g2, v)

    both = jax.jit(
        lambda a1, a2: (jax.grad(h, argnums=(0, 1))(a1, a2), _central_differences(h, a1, a2))
    )
    (hh1, hh2), (fd1, fd2) = both(a1, a2)
    scale = float(max(jnp.abs(fd1).max(), jnp.abs(fd2).max()))
    np.testing.assert_allclose(np.asarray(hh1), np.asarray(fd1), rtol=0, atol=1e-7 * scale)
    np.testing.assert_allclose(np.asarray(hh2), np.asarray(fd2), rtol=0, atol=1e-7 * scale)


@pytest.mark.parametrize("kind", tp.KINDS)
def test_jit_and_vmap_match_eager(kind):
    rng = np.random.default_rng(2)
    x1 = irreps_array(rng, (e3nn.Irreps("0e + 1o") * C).regroup(), (3,))  # small: eager mode
    x2 = irreps_array(rng, "1o", (3,))  # compiles one program per operation
    fn = lambda a, b: tp.tensor_product(kind, a, b)
    eager = fn(x1, x2)
    jitted = jax.jit(fn)(x1, x2)
    mapped = jax.jit(jax.vmap(fn))(x1, x2)  # eager vmap would compile every operation again
    for other in (jitted, mapped):
        assert other.irreps == eager.irreps
        np.testing.assert_allclose(
            np.asarray(other.array), np.asarray(eager.array), rtol=1e-12, atol=1e-12
        )
