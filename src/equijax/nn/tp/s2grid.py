"""Exact spherical-grid transforms with m-block structure, and the exact resolution chooser.

Grid: Gauss-Legendre in cos β (``res_beta`` nodes, exact for polynomials in cos β of degree
≤ 2 res_beta - 1) times a uniform α grid (``res_alpha`` nodes, exact for trigonometric
polynomials of degree < res_alpha). A product of the functions of two parity classes with largest
degrees La and Lb, projected onto Y_l for l ≤ Lout, integrates polynomials of degree
D = La + Lb + Lout (one less for the odd vector-Gaunt term). Every (l1, l2, l3) combination must
come out exact, including those whose exact integral is zero (odd l1 + l2 + l3, or l3 > l1 + l2),
so D is taken over the inputs' degrees, not only over realized paths. ``res_beta = D // 2 + 1`` and
``res_alpha = D + 1`` are then exact, and one step lower in either is not.

Transforms never form the dense (l, m) × grid matrix (O(L⁴) per channel): the β step is an
elementwise product per l summed into m columns (O(L³), one XLA fusion), the α step one matmul of
(..., C·res_beta, 2L+1) by (2L+1, res_alpha).
"""

from __future__ import annotations

import functools

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np

from equijax.nn.tp import sh_tables
from equijax.nn.tp.inputs import parity_class
from equijax.nn.tp.paths import paths


def resolution_for_degree(degree: int) -> tuple[int, int]:
    """(res_beta, res_alpha) integrating every spherical polynomial of ``degree`` exactly."""
    if degree < 0:
        raise ValueError(f"degree must be >= 0, got {degree}")
    return degree // 2 + 1, degree + 1


def grid_degree(kind: str, irreps_in1, irreps_in2, irreps_out=None) -> int:
    """Largest polynomial degree the quadrature of ``kind``'s product must integrate exactly.

    Per pair of parity classes (a of input 1, b of input 2) that reaches an output:
    La + Lb + (largest even-part output l), and La + Lb - 1 + (largest odd-part output l).
    """
    realized = paths(kind, irreps_in1, irreps_in2, irreps_out)
    top1, top2 = {}, {}
    for top, irreps in ((top1, irreps_in1), (top2, irreps_in2)):
        for _, ir in e3nn.Irreps(irreps):
            top[parity_class(ir)] = max(top.get(parity_class(ir), 0), ir.l)
    degree = 0
    for p in realized:
        a, b = parity_class(p.ir1), parity_class(p.ir2)
        degree = max(degree, top1[a] + top2[b] + p.ir_out.l - (1 if p.odd else 0))
    return degree


def grid_resolution(kind: str, irreps_in1, irreps_in2, irreps_out=None) -> tuple[int, int]:
    """The smallest exact (res_beta, res_alpha) for ``kind``'s product of these irreps."""
    return resolution_for_degree(grid_degree(kind, irreps_in1, irreps_in2, irreps_out))


class GridTables:
    """Float64 tables of one grid for inputs up to ``lmax_in`` and outputs up to ``lmax_out``.

    theta_in: Θ_lm(β_b), (res_beta, lmax_in+1, 2 lmax_in+1).
    dtheta_in, theta_sin_in: ∂_β Θ_lm and Θ_lm / sin β, each divided by √(l(l+1)) (zero at l=0),
        so the surface gradient of a unit-norm harmonic has unit norm.
    alpha_in, dalpha_in: A_m(α_a) and dA_m/dα, (res_alpha, 2 lmax_in+1).
    alpha_out: A_m(α_a), (res_alpha, 2 lmax_out+1).
    theta_out_w: √(4π) × quadrature weight × Θ_lm(β_b), (res_beta, lmax_out+1, 2 lmax_out+1).
    """

    def __init__(self, lmax_in: int, lmax_out: int, res_beta: int, res_alpha: int):
        beta, alpha, weight = sh_tables.gauss_legendre_grid(res_beta, res_alpha)
        self.lmax_in, self.lmax_out = lmax_in, lmax_out
        self.res_beta, self.res_alpha = res_beta, res_alpha
        value, deriv = sh_tables.theta_and_derivative(lmax_in, beta)
        ls = np.arange(lmax_in + 1)
        grad_norm = np.where(ls > 0, 1.0 / np.sqrt(np.maximum(ls * (ls + 1), 1)), 0.0)[:, None]
        self.theta_in = value
        self.dtheta_in = deriv * grad_norm
        self.theta_sin_in = value / np.sin(beta)[:, None, None] * grad_norm
        self.alpha_in = sh_tables.alpha_basis(lmax_in, alpha)
        m = np.arange(-lmax_in, lmax_in + 1)
        # dA_m/dα = -m A_{-m}: √2 cos(mα) -> -m √2 sin(mα); √2 sin(|m|α) -> |m| √2 cos(|m|α)
        self.dalpha_in = self.alpha_in[:, ::-1] * (-m)
        self.alpha_out = sh_tables.alpha_basis(lmax_out, alpha)
        # e3nn's "integral" normalization: f = √(4π) Σ x_lm Y_lm (x = 1·0e is the constant 1) and
        # x_lm = ∫ f Y_lm / √(4π); a product's coefficients are therefore √(4π) ∫ f1 f2 Y_lm.
        self.theta_out_w = (
            sh_tables.theta(lmax_out, beta) * weight[:, None, None] * np.sqrt(4 * np.pi)
        )


@functools.cache
def grid_tables(lmax_in: int, lmax_out: int, res_beta: int, res_alpha: int) -> GridTables:
    """Cached `GridTables`."""
    return GridTables(lmax_in, lmax_out, res_beta, res_alpha)


def beta_synthesis(chunks: dict, table: np.ndarray, lmax: int, dtype) -> jax.Array:
    """Σ_l x_lm T[b, l, m]: {l: (..., C, 2l+1)} -> (..., C, res_beta, 2 lmax+1) (m columns).

    ``table`` is (res_beta, ≥lmax+1, ≥2 lmax+1) centred on m = 0; one fused elementwise pass.
    """
    centre = (table.shape[-1] - 1) // 2
    total = None
    for l, x in chunks.items():
        t = jnp.asarray(table[:, l, centre - l : centre + l + 1], dtype)  # (b, 2l+1)
        term = x[..., None, :] * t  # (..., C, b, 2l+1)
        pad = [(0, 0)] * (term.ndim - 1) + [(lmax - l, lmax - l)]
        term = jnp.pad(term, pad)
        total = term if total is None else total + term
    return total


def alpha_synthesis(f: jax.Array, alpha_table: np.ndarray) -> jax.Array:
    """(..., b, 2L+1) m columns -> (..., b, res_alpha) grid values."""
    return jnp.einsum("...m,am->...a", f, jnp.asarray(alpha_table, f.dtype))


def alpha_analysis(h: jax.Array, alpha_table: np.ndarray) -> jax.Array:
    """(..., b, res_alpha) grid values -> (..., b, 2L+1) m columns (α quadrature sum)."""
    return jnp.einsum("...a,am->...m", h, jnp.asarray(alpha_table, h.dtype))


def beta_analysis(hm: jax.Array, theta_w: np.ndarray, ls, lmax: int) -> dict:
    """(..., C, b, 2 lmax+1) -> {l: (..., C, 2l+1)} by the weighted β sum with Θ_l."""
    out = {}
    for l in ls:
        t = jnp.asarray(theta_w[:, l, lmax - l : lmax + l + 1], hm.dtype)
        out[l] = jnp.einsum("...bm,bm->...m", hm[..., lmax - l : lmax + l + 1], t)
    return out


def to_grid(chunks: dict, tables: GridTables, dtype) -> jax.Array:
    """Function values on the grid: {l: (..., C, 2l+1)} -> (..., C, res_beta, res_alpha)."""
    f = beta_synthesis(chunks, tables.theta_in, tables.lmax_in, dtype)
    return alpha_synthesis(f, tables.alpha_in)


def surface_gradient_on_grid(chunks: dict, tables: GridTables, dtype):
    """(∂_β f, ∂_α f / sin β) on the grid for f = Σ x_lm Y_lm / √(l(l+1)); each (..., C, b, a)."""
    f_beta = alpha_synthesis(
        beta_synthesis(chunks, tables.dtheta_in, tables.lmax_in, dtype), tables.alpha_in
    )
    f_alpha = alpha_synthesis(
        beta_synthesis(chunks, tables.theta_sin_in, tables.lmax_in, dtype), tables.dalpha_in
    )
    return f_beta, f_alpha


def from_grid(h: jax.Array, tables: GridTables, ls) -> dict:
    """Project grid values (..., C, b, a) onto Y_lm for l in ``ls``: {l: (..., C, 2l+1)}."""
    hm = alpha_analysis(h, tables.alpha_out)
    return beta_analysis(hm, tables.theta_out_w, ls, tables.lmax_out)
