"""Gaunt tensor product on an exact spherical grid: the coefficients of f1 · f2.

Each channel of ``x1`` is the function f1 = √(4π) Σ x1_lm Y_lm on the sphere (e3nn's "integral"
normalization: Y orthonormal, x = 1·0e is the constant 1), likewise ``x2``; the output holds
x_lm = ∫ f1 f2 Y_lm dΩ / √(4π) for the requested l, i.e. √(4π) Σ x1 x2 ∫ Y Y Y (Gaunt
coefficients). It equals e3nn-jax's
``from_s2grid(to_s2grid(x1) * to_s2grid(x2))`` at a high enough resolution, and is computed
exactly at the smallest exact resolution (`equijax.nn.tp.s2grid`).

Two exact evaluation orders:

- ``"grid"``: values of both functions on the grid, their product, and back (per channel
  O(res_beta · res_alpha · L)).
- ``"operator"`` (``x2`` with one channel, e.g. edge harmonics): multiplication by f2 on each
  β ring is a (2L1+1) × (2Lout+1) matrix M_b = Aᵀ diag(f2) A' built once per sample; every
  channel then costs a batched matmul on the m columns, and no per-channel grid is ever stored.

``method="auto"`` picks the cheaper by a FLOP count.
"""

from __future__ import annotations

import jax.numpy as jnp

from equijax.nn.tp import s2grid
from equijax.nn.tp.product import spherical_product

METHODS = ("auto", "grid", "operator")


def _flop_counts(channels: int, lmax1: int, lmax_out: int, res_beta: int, res_alpha: int):
    """Per-sample multiply-adds of the channel-dependent work of each method."""
    m1, m3 = 2 * lmax1 + 1, 2 * lmax_out + 1
    grid = channels * res_beta * res_alpha * (m1 + 1 + m3)
    operator = res_beta * res_alpha * m1 * m3 + channels * res_beta * m1 * m3
    return grid, operator


def choose_method(
    method: str,
    channels1: int,
    channels2: int,
    lmax1: int,
    lmax_out: int,
    resolution: tuple[int, int],
) -> str:
    """Resolve ``method`` ("auto" -> "grid" or "operator"); `ValueError` if impossible."""
    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {METHODS}")
    if method == "operator" and channels2 != 1:
        raise ValueError("method='operator' needs x2 with multiplicity 1 (one function per sample)")
    if method != "auto":
        return method
    if channels2 != 1:
        return "grid"
    grid, operator = _flop_counts(channels1, lmax1, lmax_out, *resolution)
    return "operator" if operator < grid else "grid"


def _operator_product(
    c1: dict, c2: dict, t1: s2grid.GridTables, t2: s2grid.GridTables, ls, dtype
) -> dict:
    g2 = s2grid.to_grid(c2, t2, dtype)[..., 0, :, :]  # (..., b, a): one function per sample
    m = jnp.einsum(
        "am,...ba,an->...bmn", jnp.asarray(t1.alpha_in, dtype), g2, jnp.asarray(t1.alpha_out, dtype)
    )
    f1 = s2grid.beta_synthesis(c1, t1.theta_in, t1.lmax_in, dtype)  # (..., C, b, m)
    hm = jnp.einsum("...cbm,...bmn->...cbn", f1, m)
    return s2grid.beta_analysis(hm, t1.theta_out_w, ls, t1.lmax_out)


def _grid_product(
    c1: dict, c2: dict, t1: s2grid.GridTables, t2: s2grid.GridTables, ls, dtype
) -> dict:
    h = s2grid.to_grid(c1, t1, dtype) * s2grid.to_grid(c2, t2, dtype)
    return s2grid.from_grid(h, t1, ls)


def gaunt_s2grid(
    x1, x2, *, filter_ir_out=None, resolution: tuple[int, int] | None = None, method: str = "auto"
):
    """Gaunt product of two irreps features, exact on a Gauss-Legendre × uniform grid.

    Args:
        x1: `e3nn.IrrepsArray` (..., C x [irreps]) with one multiplicity C for every irrep;
            mixed parities (e.g. 0e + 1o + 1e) are allowed.
        x2: `e3nn.IrrepsArray` with multiplicity 1 (broadcast over channels) or C (channelwise).
        filter_ir_out: output irreps to keep (default: all, up to l1max + l2max).
        resolution: (res_beta, res_alpha); default the exact `s2grid.grid_resolution`.
        method: "auto", "grid" or "operator" (see the module docstring); results are identical.

    Returns:
        `e3nn.IrrepsArray` (broadcast leading shape, C x [realized irreps sorted]): for each output
        irrep of parity class c = a·b, the coefficients of f1·f2. Only couplings with l1 + l2 + l3 even exist
        (`paths("gaunt_grid", ...)`).
    """

    def blocks(c1, c2, even_ls, odd_ls, product_class, dtype, ctx):
        chosen = choose_method(
            method, ctx.channels1, ctx.channels2, ctx.lmax1, ctx.lmax_out, ctx.resolution
        )
        product = _operator_product if chosen == "operator" else _grid_product
        return [(product_class, product(c1, c2, *ctx.tables(), even_ls, dtype))]

    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {METHODS}")
    return spherical_product(
        "gaunt_grid", x1, x2, blocks, filter_ir_out=filter_ir_out, resolution=resolution
    )
