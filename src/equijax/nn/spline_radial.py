"""Learnable cubic B-spline radial functions (Facet-style), C² and exactly zero at the cutoff.

Uniform knots of spacing h = cutoff / num_basis. Basis function k (k = 0 .. num_basis-1) is the
uniform cubic B-spline supported on [(k-3) h, (k+1) h]: the first three start below r = 0 (so the
value at r = 0 is free) and the last ends exactly at the cutoff. Every basis function, and so
every combination of them, has value, first and second derivative exactly zero at r ≥ cutoff;
no envelope is needed. A radial function is ``bspline_basis(r) @ coefficients``: the
(edges, num_basis) design matrix is computed once per graph and shared by every layer, and each
layer's radial network is one small matmul (coefficients per channel or per path).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def cubic_bspline(u: jax.Array) -> jax.Array:
    """The uniform cubic B-spline on knots 0, 1, 2, 3, 4 (zero outside [0, 4)); C² everywhere."""
    u1, u2, u3 = u - 1.0, u - 2.0, u - 3.0
    piece0 = u**3
    piece1 = -3 * u1**3 + 3 * u1**2 + 3 * u1 + 1
    piece2 = 3 * u2**3 - 6 * u2**2 + 4
    piece3 = (1.0 - u3) ** 3
    value = jnp.where(u < 1, piece0, jnp.where(u < 2, piece1, jnp.where(u < 3, piece2, piece3)))
    return jnp.where((u >= 0) & (u < 4), value / 6.0, 0.0)


def bspline_basis(r: jax.Array, num_basis: int, cutoff: float) -> jax.Array:
    """Design matrix of the cutoff-clamped cubic B-spline basis.

    Args:
        r: distances (...,) in Å (≥ 0).
        num_basis: number of basis functions K (≥ 4).
        cutoff: radius in Å where every basis function and its first two derivatives vanish.

    Returns:
        (..., K); rows sum to 1 for r ≤ cutoff (K - 3)/K, fall smoothly to 0 at the cutoff.
    """
    if num_basis < 4:
        raise ValueError(f"num_basis must be >= 4 for a cubic spline, got {num_basis}")
    if not cutoff > 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    spacing = cutoff / num_basis
    k = jnp.arange(num_basis, dtype=r.dtype)
    return cubic_bspline(r[..., None] / spacing - k + 3.0)


class SplineRadial(nn.Module):
    """Learnable radial functions r -> (..., features) from a cubic B-spline basis.

    A drop-in replacement for a Bessel basis followed by an MLP (`equijax.nn.radial`): the same
    call, ``radial(r)``, smooth to second order at the cutoff by construction.

    Attributes:
        features: output channels (one radial function per channel or per path).
        num_basis: number of B-spline coefficients per function.
        cutoff: cutoff radius in Å.
    """

    features: int
    num_basis: int = 8
    cutoff: float = 5.0

    @nn.compact
    def __call__(self, r: jax.Array, basis: jax.Array | None = None) -> jax.Array:
        """``r``: (...,) distances, or pass the precomputed ``basis`` (..., num_basis) instead."""
        if basis is None:
            basis = bspline_basis(r, self.num_basis, self.cutoff)
        coefficients = self.param(
            "coefficients", nn.initializers.normal(1.0), (self.num_basis, self.features)
        )
        return basis @ coefficients.astype(basis.dtype)
