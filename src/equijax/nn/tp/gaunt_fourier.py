"""Gaunt product in the 2D Fourier basis (Luo, Chen, He, Zhang, ICLR 2024), with exact coefficients.

Every real harmonic is a 2D trigonometric polynomial on the (β, α) torus,
Y_lm(β, α) = Θ_lm(β) A_m(α) = Σ_{|u|,|v| ≤ l} y[l,m,u,v] e^{i(uβ + vα)}, with v = ±m only. So

1. x -> F[u, v]: O(L³) per channel (β step Σ_l x_lm θ[l,m,u], then α step onto v = ±m);
2. f1 · f2 is the 2D convolution F1 * F2 (FFT, or direct when one input is small);
3. back to Y_lm with the exact integrals ∫₀^π e^{iuβ} Θ_lm(β) sin β dβ (closed form of
   ∫₀^π e^{ikβ} sin β dβ) and ∫₀^{2π} e^{ivα} A_m(α) dα = 2π a[m, -v].

The coefficients come from the exact Fourier series of Θ (`sh_tables.theta_fourier`), not from a
fitted or oversampled grid, so the result equals `gaunt_s2grid` to rounding.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from equijax.nn.tp import s2grid, sh_tables
from equijax.nn.tp.product import ProductContext, spherical_product

METHODS = ("auto", "fft", "direct")


def _alpha_fourier(lmax: int) -> np.ndarray:
    """a[m, v]: A_m(α) = Σ_v a[m, v] e^{ivα}, m, v in -lmax..lmax (complex)."""
    a = np.zeros((2 * lmax + 1, 2 * lmax + 1), complex)
    c = lmax
    a[c, c] = 1.0
    for m in range(1, lmax + 1):
        a[c + m, c + m] = a[c + m, c - m] = 1 / np.sqrt(2)  # √2 cos(mα)
        a[c - m, c + m], a[c - m, c - m] = -1j / np.sqrt(2), 1j / np.sqrt(2)  # √2 sin(mα)
    return a


def _sin_integral(k: np.ndarray) -> np.ndarray:
    """∫₀^π e^{ikβ} sin β dβ for integer k (closed form)."""
    k = np.asarray(k)
    even = np.where(k % 2 == 0, 2.0 / np.where(np.abs(k) == 1, 1, 1 - k * k), 0.0)
    return np.where(k == 1, 0.5j * np.pi, np.where(k == -1, -0.5j * np.pi, even))


@functools.cache
def fourier_tables(lmax_in: int, lmax_out: int, lmax_product: int):
    """Exact change-of-basis tables (complex numpy).

    to_beta: (u, l, m) = θ[l, m, u] for inputs up to lmax_in, u in -lmax_in..lmax_in.
    to_alpha: (v, m) = a[m, v].
    from_alpha: (v, m) = 2π a[m, -v] for outputs up to lmax_out, v in -lmax_product..lmax_product.
    from_beta: (u, l, m) = √(4π) Σ_u' θ[l, m, u'] I(u + u'), u in -lmax_product..lmax_product.
    """
    theta_in = sh_tables.theta_fourier(lmax_in)  # (l, m, u)
    to_beta = np.transpose(theta_in, (2, 0, 1))
    to_alpha = _alpha_fourier(lmax_in).T
    theta_out = sh_tables.theta_fourier(lmax_out)  # (l, m, u')
    a_out = _alpha_fourier(lmax_out)  # (m, v') with |v'| ≤ lmax_out
    k = lmax_product
    from_alpha = np.zeros((2 * k + 1, 2 * lmax_out + 1), complex)
    for v in range(-lmax_out, lmax_out + 1):
        from_alpha[k + v, :] = 2 * np.pi * a_out[:, lmax_out - v]
    u = np.arange(-k, k + 1)
    u_prime = np.arange(-lmax_out, lmax_out + 1)
    integral = _sin_integral(u[:, None] + u_prime[None, :])  # (u, u')
    from_beta = np.sqrt(4 * np.pi) * np.einsum("ux,lmx->ulm", integral, theta_out)
    return to_beta, to_alpha, from_alpha, from_beta


def _convolve_fft(f1, f2):
    n = f1.shape[-1] + f2.shape[-1] - 1
    size = (n, n)
    prod = jnp.fft.fft2(f1, s=size) * jnp.fft.fft2(f2, s=size)
    return jnp.fft.ifft2(prod)


def _convolve_direct(f1, f2):
    """Σ over the (small) support of f2 of shifted copies of f1: O(|f1| |f2|), fused elementwise."""
    k1, k2 = f1.shape[-1], f2.shape[-1]
    n = k1 + k2 - 1
    lead = jnp.broadcast_shapes(f1.shape[:-2], f2.shape[:-2])
    out = jnp.zeros(lead + (n, n), jnp.result_type(f1, f2))
    for i in range(k2):
        for j in range(k2):
            out = out.at[..., i : i + k1, j : j + k1].add(f1 * f2[..., i : i + 1, j : j + 1])
    return out


def _to_fourier(chunks: dict, lmax: int, tables, dtype):
    to_beta, to_alpha = tables[0], tables[1]
    g = s2grid.beta_synthesis(chunks, to_beta, lmax, dtype)  # (..., C, u, m)
    return jnp.einsum("...m,vm->...v", g, jnp.asarray(to_alpha, dtype))  # (..., C, u, v)


def gaunt_fourier(x1, x2, *, filter_ir_out=None, method: str = "auto"):
    """Gaunt product through the 2D Fourier basis; the same function as `gaunt_s2grid`.

    Args:
        x1: `e3nn.IrrepsArray` (..., C x [irreps]), one multiplicity C for every irrep.
        x2: `e3nn.IrrepsArray` with multiplicity 1 (broadcast over channels) or C.
        filter_ir_out: output irreps to keep (default: all).
        method: "fft" (2D FFT convolution), "direct" (shifted sums over the support of x2), or
            "auto" (direct when x2's lmax ≤ 1, else FFT). Results agree to rounding.

    Returns:
        `e3nn.IrrepsArray` (..., C x [realized irreps sorted]); only l1 + l2 + l3 even couplings.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {METHODS}")

    def blocks(c1, c2, even_ls, odd_ls, product_class, dtype, ctx: ProductContext):
        if not even_ls:
            return []
        cdtype = jnp.result_type(dtype, jnp.complex64)
        k = ctx.lmax1 + ctx.lmax2
        t1 = fourier_tables(ctx.lmax1, ctx.lmax_out, k)
        t2 = fourier_tables(ctx.lmax2, ctx.lmax_out, k)
        f1 = _to_fourier(c1, ctx.lmax1, t1, cdtype)
        f2 = _to_fourier(c2, ctx.lmax2, t2, cdtype)
        chosen = method if method != "auto" else ("direct" if ctx.lmax2 <= 1 else "fft")
        h = (_convolve_direct if chosen == "direct" else _convolve_fft)(f1, f2)  # (..., C, u, v)
        hm = jnp.einsum("...v,vm->...m", h, jnp.asarray(t1[2], cdtype))  # (..., C, u, m)
        values = s2grid.beta_analysis(hm, t1[3], even_ls, ctx.lmax_out)
        return [(product_class, {l: v.real.astype(dtype) for l, v in values.items()})]

    return spherical_product("gaunt_fourier", x1, x2, blocks, filter_ir_out=filter_ir_out)
