"""Real spherical harmonics in e3nn-jax's convention, factored as Θ_lm(β) · A_m(α), in float64.

e3nn-jax evaluates Y_lm at r = (sin β sin α, cos β, sin β cos α) (β from the y axis). With the
"integral" normalization (∫ Y_lm² dΩ = 1) every real harmonic factors as

    Y_lm(β, α) = Θ_lm(β) · A_m(α),   A_0 = 1,  A_m = √2 cos(mα) (m > 0),  A_m = √2 sin(|m|α) (m < 0),

with Θ_lm = P̄_l^|m|(cos β) / √(2π), P̄ the fully normalised associated Legendre function without
the Condon-Shortley phase (e3nn-jax's convention; tests/nn/tp/test_sh_tables.py checks every
(l, m) against `e3nn.spherical_harmonics`, so a change in e3nn fails loudly).

Θ_lm(β), continued to β in [0, 2π) as sin^|m| β · poly(cos β), is a trigonometric polynomial of
degree ≤ l; `theta_fourier` gives its exact Fourier coefficients, from which values, β-derivatives
and the 2D Fourier basis of the Gaunt-Fourier product all follow exactly.
All tables are numpy float64, built once per size (cached) at trace time.
"""

from __future__ import annotations

import functools

import numpy as np


def _normalized_legendre(lmax: int, cos_b: np.ndarray, sin_b: np.ndarray) -> np.ndarray:
    """P̄_l^m(cos β) for 0 ≤ m ≤ l ≤ lmax, ∫_{-1}^{1} P̄² dy = 1; shape (..., lmax+1, lmax+1) [l, m].

    ``sin_b`` may be negative (β beyond π), which keeps the result a trigonometric polynomial in β.
    """
    out = np.zeros(cos_b.shape + (lmax + 1, lmax + 1))
    out[..., 0, 0] = np.sqrt(0.5)
    for m in range(1, lmax + 1):
        out[..., m, m] = np.sqrt((2 * m + 1) / (2 * m)) * sin_b * out[..., m - 1, m - 1]
    for m in range(lmax):
        out[..., m + 1, m] = np.sqrt(2 * m + 3) * cos_b * out[..., m, m]
    for m in range(lmax + 1):
        for l in range(m + 2, lmax + 1):
            a = np.sqrt((4 * l * l - 1) / (l * l - m * m))
            b = np.sqrt(((l - 1) ** 2 - m * m) / (4 * (l - 1) ** 2 - 1))
            out[..., l, m] = a * (cos_b * out[..., l - 1, m] - b * out[..., l - 2, m])
    return out


def alpha_basis(lmax: int, alpha: np.ndarray) -> np.ndarray:
    """A_m(α) for m = -lmax..lmax; shape (..., 2 lmax + 1), column lmax + m."""
    m = np.arange(-lmax, lmax + 1)
    alpha = np.asarray(alpha, np.float64)[..., None]
    return np.where(
        m > 0, np.sqrt(2) * np.cos(m * alpha), np.where(m < 0, np.sqrt(2) * np.sin(-m * alpha), 1.0)
    )


def _theta_unsigned(lmax: int, beta: np.ndarray) -> np.ndarray:
    """P̄_l^|m|(cos β)/√(2π) laid out as (..., l, m) with m = -lmax..lmax (zero where |m| > l)."""
    p = _normalized_legendre(lmax, np.cos(beta), np.sin(beta)) / np.sqrt(2 * np.pi)
    full = np.zeros(p.shape[:-1] + (2 * lmax + 1,))
    for m in range(-lmax, lmax + 1):
        full[..., lmax + m] = p[..., abs(m)]
    return full


def theta(lmax: int, beta: np.ndarray) -> np.ndarray:
    """Θ_lm(β); shape (..., lmax+1, 2 lmax+1) [l, lmax+m], zero where |m| > l."""
    return _theta_unsigned(lmax, np.asarray(beta, np.float64))


@functools.cache
def theta_fourier(lmax: int) -> np.ndarray:
    """Exact Fourier coefficients c[l, lmax+m, lmax+u] of Θ_lm(β) = Σ_u c e^{iuβ}, |u| ≤ l; complex."""
    n = 2 * lmax + 2  # > 2 lmax: no aliasing of a degree-lmax trigonometric polynomial
    beta = 2 * np.pi * np.arange(n) / n
    samples = theta(lmax, beta)  # (n, l, m)
    coef = np.fft.fft(samples, axis=0) / n  # frequencies 0..n-1
    u = np.fft.fftfreq(n, 1.0 / n).astype(int)
    out = np.zeros((lmax + 1, 2 * lmax + 1, 2 * lmax + 1), complex)
    for k, uk in enumerate(u):
        if abs(uk) <= lmax:
            out[:, :, lmax + uk] = coef[k]
    return out


def theta_and_derivative(lmax: int, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Θ_lm(β) and ∂Θ_lm/∂β, each (..., lmax+1, 2 lmax+1), from the exact Fourier series."""
    c = theta_fourier(lmax)
    u = np.arange(-lmax, lmax + 1)
    phase = np.exp(1j * np.asarray(beta, np.float64)[..., None] * u)  # (..., u)
    value = np.einsum("...u,lmu->...lm", phase, c).real
    deriv = np.einsum("...u,lmu->...lm", phase * (1j * u), c).real
    return value, deriv


def gauss_legendre_grid(res_beta: int, res_alpha: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """β nodes (res_beta,), α nodes (res_alpha,) and sphere weights w_b with Σ_b,a w_b = 4π.

    β are the Gauss-Legendre nodes in cos β (no poles), α is uniform: ∫ f dΩ ≈ Σ_b,a w_b f(β_b, α_a).
    """
    y, w = np.polynomial.legendre.leggauss(res_beta)
    alpha = 2 * np.pi * np.arange(res_alpha) / res_alpha
    return np.arccos(y), alpha, w * (2 * np.pi / res_alpha)
