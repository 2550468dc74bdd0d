"""A learned pair energy whose forces and virial are exact, for direct-head models.

A direct model's energy learns from one label per structure, a conservative model's from the 3N
force labels as well. This term gives a direct model part of that back without a second
derivative through the network:

    u_p = Σ_k c_k(p) b_k(r_p)          E = Σ_pairs u_p          (eV)

with coefficients ``c(p)`` from an MLP of the pair's invariant features (held fixed, as in the
direct heads) and ``b_k`` a smooth radial basis that vanishes with its first two derivatives at
the cutoff (Bessel functions times CHGNet's polynomial envelope). Its forces, pair weights
``u'_p = Σ_k c_k b'_k(r_p)`` along r̂ (`equijax.nn.direct_heads.direct_forces`), and its virial
``(1/V) Σ_p u'_p r_p r̂⊗r̂`` are the exact derivatives of E with respect to positions and strain
*at fixed features*. So force labels train the coefficients that energy labels train, through
``b'`` — a derivative of the basis only, computed in closed form per edge.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from equijax.nn.radial import bessel_basis, polynomial_cutoff


def smooth_pair_basis(
    r: jax.Array, num_basis: int, cutoff: float, envelope_order: float = 8.0
) -> tuple[jax.Array, jax.Array]:
    """``(b(r), b'(r))``, each (..., num_basis): Bessel functions of frequencies π·(1..K) times
    CHGNet's polynomial envelope of order ``envelope_order`` at ``cutoff`` Å, and their
    derivative in r (1/Å). ``r`` (...,) Å must be > 0; both vanish beyond the cutoff."""
    frequencies = jnp.asarray(np.pi * np.arange(1, num_basis + 1), r.dtype)

    def basis(x):
        return (
            bessel_basis(x, frequencies, cutoff)
            * polynomial_cutoff(x, cutoff, envelope_order)[..., None]
        )

    return jax.jvp(basis, (r,), (jnp.ones_like(r),))


def pair_energy(
    coefficients: jax.Array, pair_lengths: jax.Array, cutoff: float
) -> tuple[jax.Array, jax.Array]:
    """``(u, u')``, each (P,): the pair energies ``u_p = Σ_k c_k(p) b_k(r_p)`` (eV) and their
    slopes in r (eV/Å), from ``coefficients`` (P, K) eV and ``pair_lengths`` (P,) Å (> 0).

    ``cutoff`` (Å) should be the graph's, so that a pair's energy goes smoothly to 0 as it leaves
    the graph. ``u'`` is the pair weight that `equijax.nn.direct_heads.direct_forces` puts on r̂
    (F_i = Σ_j u'_ij r̂_ij = -∂E/∂x_i at fixed coefficients) and, as ``force_weights`` of
    `equijax.nn.direct_heads.direct_stress`, gives the virial (1/V) ∂E/∂ε."""
    basis, slope = smooth_pair_basis(pair_lengths, coefficients.shape[-1], cutoff)
    return jnp.sum(coefficients * basis, axis=-1), jnp.sum(coefficients * slope, axis=-1)
