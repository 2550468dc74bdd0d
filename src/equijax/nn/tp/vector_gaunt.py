"""Vector Gaunt product: the Gaunt product plus the antisymmetric (l1 + l2 + l3 odd) couplings.

A product of two functions on the sphere is symmetric, so a Gaunt product misses couplings such as
the cross product 1o ⊗ 1o → 1e. Vector spherical harmonics recover them (as in "The Price of
Freedom", Xie et al. 2025): with g = ∇_S f / √(l(l+1)) the normalised surface gradient of each
channel's function, the output is

    even paths:  √(4π) ∫ f1 f2 Y_lm dΩ               (parity class a·b, the Gaunt product)
    odd paths:   √(4π) ∫ r̂ · (g1 × g2) Y_lm dΩ       (parity class -a·b: r̂ flips sign under inversion)

(f = Σ x_lm Y_lm per channel; the √(4π) is e3nn's "integral" normalization, see `gaunt_s2grid`.)

r̂ · (g1 × g2) = ∂_β f1 ∂_α f2 / sin β - ∂_α f1 / sin β ∂_β f2 (normalised) is a spherical polynomial
of degree l1 + l2 - 1, so the same exact Gauss-Legendre grid integrates it. For two vectors a, b
(1o) the odd part is (√3 / 2) a × b (e3nn's "integral" normalization, as in `gaunt_s2grid`).
"""

from __future__ import annotations

from equijax.nn.tp import s2grid
from equijax.nn.tp.product import ProductContext, spherical_product


def vector_blocks(
    c1: dict, c2: dict, even_ls, odd_ls, product_class: int, dtype, ctx: ProductContext
) -> list:
    """[(parity class, {l: (..., C, 2l+1)})] of the even and odd parts of one class pair."""
    t1, t2 = ctx.tables()
    results = []
    if even_ls:
        h = s2grid.to_grid(c1, t1, dtype) * s2grid.to_grid(c2, t2, dtype)
        results.append((product_class, s2grid.from_grid(h, t1, even_ls)))
    if odd_ls:
        d1_beta, d1_alpha = s2grid.surface_gradient_on_grid(c1, t1, dtype)
        d2_beta, d2_alpha = s2grid.surface_gradient_on_grid(c2, t2, dtype)
        # r̂ · (g1 × g2) with (r̂, ê_β, ê_α) right-handed in e3nn's (β from y, α about y) frame
        h = d1_beta * d2_alpha - d1_alpha * d2_beta
        results.append((-product_class, s2grid.from_grid(h, t1, odd_ls)))
    return results


def vector_gaunt(x1, x2, *, filter_ir_out=None, resolution: tuple[int, int] | None = None):
    """Vector Gaunt product: every coupling with |l1-l2| ≤ l3 ≤ l1+l2 and p3 = p1 p2.

    Args:
        x1: `e3nn.IrrepsArray` (..., C x [irreps]), one multiplicity C for every irrep.
        x2: `e3nn.IrrepsArray` with multiplicity 1 (broadcast over channels) or C.
        filter_ir_out: output irreps to keep (default: all).
        resolution: (res_beta, res_alpha); default the exact `s2grid.grid_resolution`.

    Returns:
        `e3nn.IrrepsArray` (..., C x [realized irreps sorted]); even paths equal `gaunt_s2grid`,
        odd paths are ∫ r̂·(g1 × g2) Y_lm dΩ (module docstring).
    """
    return spherical_product(
        "vector_gaunt", x1, x2, vector_blocks, filter_ir_out=filter_ir_out, resolution=resolution
    )
