"""Radial and angular bases with smooth cutoffs (CHGNet's conventions), as pure functions and thin
`flax.linen` modules holding the learnable frequencies. Learnable cubic B-spline radials
(`SplineRadial`, `bspline_basis`) live in `equijax.nn.spline_radial` and are re-exported here."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from equijax.nn.spline_radial import SplineRadial, bspline_basis

__all__ = [
    "FourierAngle",
    "RadialBessel",
    "SplineRadial",
    "angle_between",
    "bessel_basis",
    "bspline_basis",
    "fourier_basis",
    "polynomial_cutoff",
]


def polynomial_cutoff(r: jax.Array, cutoff: float, p: float) -> jax.Array:
    """CHGNet's polynomial envelope ``1 + a x^p + b x^(p+1) + c x^(p+2)`` of ``x = r / cutoff``,
    zero for ``x >= 1``; value, first and second derivative vanish at the cutoff.

    Args:
        r: distances, any shape, Å.
        cutoff: Å.
        p: envelope order (CHGNet's ``cutoff_coeff``; 0 disables the envelope).
    """
    if p == 0:
        return jnp.ones_like(r)
    a = -(p + 1) * (p + 2) / 2
    b = p * (p + 2)
    c = -p * (p + 1) / 2
    x = r / cutoff
    # evaluate the polynomial on min(x, 1) so values beyond the cutoff stay finite for gradients
    xc = jnp.minimum(x, 1.0)
    envelope = 1 + a * xc**p + b * xc ** (p + 1) + c * xc ** (p + 2)
    return jnp.where(x < 1, envelope, 0.0)


def bessel_basis(r: jax.Array, frequencies: jax.Array, cutoff: float) -> jax.Array:
    """Spherical Bessel functions of order 0, ``sqrt(2 / cutoff) sin(f r / cutoff) / r``.

    Args:
        r: (...,) distances, Å (must be > 0).
        frequencies: (num_radial,) ``f``, initially ``pi * (1..num_radial)``.
        cutoff: Å.

    Returns:
        (..., num_radial).
    """
    r = r[..., None]
    return np.sqrt(2.0 / cutoff) * jnp.sin(frequencies * (r / cutoff)) / r


def fourier_basis(angle: jax.Array, frequencies: jax.Array) -> jax.Array:
    """CHGNet's circular harmonics ``[1/sqrt(2), sin(f θ), cos(f θ)] / sqrt(pi)``.

    Args:
        angle: (...,) angles, radians.
        frequencies: (order,) ``f``, initially ``1..order``.

    Returns:
        (..., 1 + 2 * order).
    """
    phase = angle[..., None] * frequencies
    constant = jnp.full(angle.shape + (1,), 1 / np.sqrt(2.0), dtype=phase.dtype)
    return jnp.concatenate([constant, jnp.sin(phase), jnp.cos(phase)], axis=-1) / np.sqrt(np.pi)


def angle_between(u: jax.Array, v: jax.Array) -> jax.Array:
    """Angle between unit vectors (..., 3), radians; the cosine is shrunk by 1e-6 as in CHGNet so
    that ``arccos`` keeps a finite gradient at 0 and pi."""
    return jnp.arccos(jnp.sum(u * v, axis=-1) * (1 - 1e-6))


class RadialBessel(nn.Module):
    """Bessel basis times the polynomial envelope, with learnable frequencies (param
    ``frequencies``, shape (num_radial,)). Input (...,) distances in Å; output (..., num_radial).
    """

    num_radial: int = 31
    cutoff: float = 6.0
    cutoff_coeff: float = 8.0
    learnable: bool = True

    @nn.compact
    def __call__(self, r: jax.Array) -> jax.Array:
        init = np.pi * np.arange(1, self.num_radial + 1)
        if self.learnable:
            frequencies = self.param("frequencies", lambda _: jnp.asarray(init, jnp.float32))
        else:
            frequencies = jnp.asarray(init, r.dtype)
        basis = bessel_basis(r, frequencies, self.cutoff)
        return basis * polynomial_cutoff(r, self.cutoff, self.cutoff_coeff)[..., None]


class FourierAngle(nn.Module):
    """Fourier basis of an angle with learnable frequencies (param ``frequencies``, shape
    ((num_angular - 1) / 2,)). Input (...,) radians; output (..., num_angular)."""

    num_angular: int = 31
    learnable: bool = True

    @nn.compact
    def __call__(self, angle: jax.Array) -> jax.Array:
        if self.num_angular % 2 != 1:
            raise ValueError(f"num_angular must be odd, got {self.num_angular}")
        init = np.arange(1, (self.num_angular - 1) // 2 + 1, dtype=np.float64)
        if self.learnable:
            frequencies = self.param("frequencies", lambda _: jnp.asarray(init, jnp.float32))
        else:
            frequencies = jnp.asarray(init, angle.dtype)
        return fourier_basis(angle, frequencies)
