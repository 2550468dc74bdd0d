"""`sh_tables` Θ_lm(β)·A_m(α) against `e3nn.spherical_harmonics` (l ≤ 10) and exact Gauss-Legendre quadrature."""

from __future__ import annotations

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from equijax.nn.tp import sh_tables

LMAX = 10


def _angles(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    beta = rng.uniform(0, np.pi, n)
    alpha = rng.uniform(0, 2 * np.pi, n)
    # both poles (sin β = 0) and the α seam
    beta = np.concatenate([beta, [0.0, np.pi, 0.3, 2.9]])
    alpha = np.concatenate([alpha, [1.1, 4.0, 0.0, 2 * np.pi - 1e-9]])
    return beta, alpha


def _factored(lmax: int, beta, alpha) -> np.ndarray:
    """Y[..., l, lmax+m] = Θ[..., l, lmax+m] A[..., lmax+m]."""
    return sh_tables.theta(lmax, beta) * sh_tables.alpha_basis(lmax, alpha)[..., None, :]


def test_matches_e3nn_spherical_harmonics_every_l_m():
    beta, alpha = _angles(60)
    r = np.stack([np.sin(beta) * np.sin(alpha), np.cos(beta), np.sin(beta) * np.cos(alpha)], -1)
    irreps = e3nn.s2_irreps(LMAX)
    with jax.enable_x64(True):  # float64 reference: float32 rounding reaches 2e-5 at l = 8
        sh = jax.jit(
            lambda v: (
                e3nn.spherical_harmonics(irreps, v, normalize=True, normalization="integral").array
            )
        )
        want = np.asarray(sh(jnp.asarray(r, jnp.float64)))
    assert want.dtype == np.float64
    y = _factored(LMAX, beta, alpha)
    got = np.concatenate([y[:, l, LMAX - l : LMAX + l + 1] for l in range(LMAX + 1)], axis=-1)
    assert got.shape == want.shape
    for l in range(LMAX + 1):
        sl = slice(l * l, (l + 1) ** 2)
        np.testing.assert_allclose(got[:, sl], want[:, sl], rtol=0, atol=1e-11, err_msg=f"l={l}")


def test_theta_zero_outside_m_range():
    beta, _ = _angles(20)
    t = sh_tables.theta(LMAX, beta)
    m = np.arange(-LMAX, LMAX + 1)
    for l in range(LMAX + 1):
        assert np.all(t[:, l, np.abs(m) > l] == 0.0), l


def test_orthonormal_on_fine_grid():
    """Σ w Y_lm Y_l'm' = δ on a Gauss-Legendre × uniform grid exact for degree 2 LMAX (numpy nodes)."""
    res_beta, res_alpha = LMAX + 2, 2 * LMAX + 3
    y, w = np.polynomial.legendre.leggauss(res_beta)
    beta = np.arccos(y)
    alpha = 2 * np.pi * np.arange(res_alpha) / res_alpha
    weight = (w[:, None] * np.full(res_alpha, 2 * np.pi / res_alpha)).reshape(-1)
    bb, aa = np.meshgrid(beta, alpha, indexing="ij")
    ylm = _factored(LMAX, bb.reshape(-1), aa.reshape(-1))  # (points, l, m)
    cols = np.concatenate([ylm[:, l, LMAX - l : LMAX + l + 1] for l in range(LMAX + 1)], axis=-1)
    gram = cols.T @ (weight[:, None] * cols)
    np.testing.assert_allclose(gram, np.eye(cols.shape[1]), atol=1e-12)


def test_gauss_legendre_grid_integrates_exactly():
    """Weights sum to 4π and integrate Y_lm Y_l'm' exactly up to the rule's degree."""
    res_beta, res_alpha = 5, 9
    beta, alpha, w = sh_tables.gauss_legendre_grid(res_beta, res_alpha)
    assert beta.shape == (res_beta,) and alpha.shape == (res_alpha,) and w.shape == (res_beta,)
    np.testing.assert_allclose(w.sum() * res_alpha, 4 * np.pi, rtol=1e-14)
    np.testing.assert_allclose(
        np.sort(np.cos(beta)), np.polynomial.legendre.leggauss(res_beta)[0], atol=1e-14
    )
    lmax = 4  # products of degree 8 = 2 res_beta - 2 = res_alpha - 1: exact
    bb, aa = np.meshgrid(beta, alpha, indexing="ij")
    ylm = _factored(lmax, bb.reshape(-1), aa.reshape(-1))
    cols = np.concatenate([ylm[:, l, lmax - l : lmax + l + 1] for l in range(lmax + 1)], axis=-1)
    weight = np.repeat(w, res_alpha)
    np.testing.assert_allclose(cols.T @ (weight[:, None] * cols), np.eye(cols.shape[1]), atol=1e-13)


def test_theta_fourier_series_and_derivative():
    """The exact Fourier series reproduces Θ, and its β-derivative matches central differences."""
    lmax = 7
    beta = np.random.default_rng(1).uniform(0.05, np.pi - 0.05, 30)
    value, deriv = sh_tables.theta_and_derivative(lmax, beta)
    np.testing.assert_allclose(value, sh_tables.theta(lmax, beta), atol=1e-13)
    h = 1e-5
    fd = (sh_tables.theta(lmax, beta + h) - sh_tables.theta(lmax, beta - h)) / (2 * h)
    np.testing.assert_allclose(deriv, fd, atol=1e-8)


@pytest.mark.parametrize("lmax", [0, 1, 3])
def test_alpha_basis_columns(lmax):
    """A_0 = 1, A_m = √2 cos(mα), A_{-m} = √2 sin(mα) (the convention in the module docstring)."""
    alpha = np.linspace(0, 2 * np.pi, 7)
    a = sh_tables.alpha_basis(lmax, alpha)
    assert a.shape == (7, 2 * lmax + 1)
    np.testing.assert_array_equal(a[:, lmax], 1.0)
    for m in range(1, lmax + 1):
        np.testing.assert_allclose(a[:, lmax + m], np.sqrt(2) * np.cos(m * alpha), atol=1e-15)
        np.testing.assert_allclose(a[:, lmax - m], np.sqrt(2) * np.sin(m * alpha), atol=1e-15)
