"""Cubic B-spline radials against scipy's B-splines, finite differences and a least-squares fit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.interpolate import BSpline

from equijax.nn.spline_radial import SplineRadial, bspline_basis

CUTOFF, K = 5.0, 10


def test_design_matrix_matches_scipy_bspline_basis_elements():
    r = np.linspace(0.0, CUTOFF + 0.5, 301)
    h = CUTOFF / K
    ours = np.asarray(bspline_basis(jnp.asarray(r), K, CUTOFF))
    for k in range(K):
        element = BSpline.basis_element(h * (np.arange(5) + k - 3), extrapolate=False)
        ref = np.nan_to_num(element(r))
        np.testing.assert_allclose(ours[:, k], ref, atol=1e-6, err_msg=f"basis {k}")
    inner = r <= CUTOFF * (K - 3) / K
    np.testing.assert_allclose(ours[inner].sum(-1), 1.0, atol=1e-6)  # partition of unity


def test_value_and_two_derivatives_vanish_at_and_beyond_the_cutoff():
    module = SplineRadial(features=3, num_basis=K, cutoff=CUTOFF)
    params = module.init(jax.random.PRNGKey(0), jnp.zeros(()))

    def f(r, i):
        return module.apply(params, r)[i]

    d1, d2 = jax.grad(f), jax.grad(jax.grad(f))
    for i in range(3):
        for r in (CUTOFF, CUTOFF + 0.3):
            assert f(jnp.asarray(r), i) == 0 and d1(jnp.asarray(r), i) == 0
            assert d2(jnp.asarray(r), i) == 0
        # approaching from below: |f| ~ ε³, |f'| ~ ε², |f''| ~ ε (no jump at the cutoff)
        eps = 1e-2
        r = jnp.asarray(CUTOFF - eps)
        assert abs(f(r, i)) < 10 * eps**3 and abs(d1(r, i)) < 10 * eps**2
        assert abs(d2(r, i)) < 10 * eps


def test_derivatives_match_finite_differences():
    with jax.enable_x64(True):
        module = SplineRadial(features=2, num_basis=K, cutoff=CUTOFF)
        params = module.init(jax.random.PRNGKey(1), jnp.zeros((), jnp.float64))
        f = lambda r: module.apply(params, r)[1]
        r = jnp.asarray(np.random.default_rng(0).uniform(0.1, CUTOFF - 0.1, 20))
        grad = jax.vmap(jax.grad(f))(r)
        step = 1e-6
        fd = (jax.vmap(f)(r + step) - jax.vmap(f)(r - step)) / (2 * step)
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


def test_spline_fits_a_smooth_radial_function_to_1e_4():
    """Least squares on 2000 samples of exp(-r)(1 - r/rc)^3; error on 5000 other points < 1e-4."""
    with jax.enable_x64(True):
        target = lambda r: np.exp(-r) * (1 - r / CUTOFF) ** 3
        train = np.linspace(0, CUTOFF, 2000)
        test = np.random.default_rng(0).uniform(0, CUTOFF, 5000)
        basis = np.asarray(bspline_basis(jnp.asarray(train), 32, CUTOFF))
        coefficients, *_ = np.linalg.lstsq(basis, target(train), rcond=None)
        module = SplineRadial(features=1, num_basis=32, cutoff=CUTOFF)
        params = {"params": {"coefficients": jnp.asarray(coefficients[:, None])}}
        fitted = np.asarray(module.apply(params, jnp.asarray(test)))[:, 0]
        assert np.max(np.abs(fitted - target(test))) < 1e-4


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="num_basis"):
        bspline_basis(jnp.ones(3), 3, CUTOFF)
    with pytest.raises(ValueError, match="cutoff"):
        bspline_basis(jnp.ones(3), 8, 0.0)
