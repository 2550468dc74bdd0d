"""A learned three-body energy whose forces and virial are exact, for direct-head models: the
angle counterpart of `equijax.nn.pair_energy`.

Each angle j-i-k of the bond graph (centre i, bonds r_ij and r_ik shorter than its cutoff) gets

    φ_a = f(r_ij) f(r_ik) Σ_k d_k(a) T_k(cos θ_ijk)           (eV)

with coefficients ``d(a)`` from an MLP of the angle's invariant features (held fixed, as in the
direct heads), T_k the Chebyshev polynomials (T_k(cos θ) = cos kθ) and f CHGNet's polynomial
envelope, so φ_a goes smoothly to 0 as either bond leaves the bond graph. The gradients of φ_a
with respect to its two bond vectors are taken per angle by autodiff (a `jax.grad` of a
function of six numbers, not of the network); they give forces that are exactly −∂(Σ φ)/∂x and
a virial that is exactly (1/V) ∂(Σ φ)/∂ε, at fixed coefficients. Force labels thus train the
coefficients that energy labels train, without a second derivative through the network.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from equijax.nn.radial import polynomial_cutoff


def chebyshev(x: jax.Array, order: int) -> jax.Array:
    """(..., order) Chebyshev polynomials T_0 .. T_{order-1} of ``x`` (...,) in [-1, 1]."""
    terms = [jnp.ones_like(x), x][:order]
    while len(terms) < order:
        terms.append(2.0 * x * terms[-1] - terms[-2])
    return jnp.stack(terms, axis=-1)


def angle_energy(
    coefficients: jax.Array,
    vector_ij: jax.Array,
    vector_ik: jax.Array,
    cutoff: float,
    envelope_order: float = 8.0,
):
    """Energies ``φ`` (A,) eV and their gradients ``∂φ/∂r_ij``, ``∂φ/∂r_ik`` (A, 3) eV/Å with
    respect to the two bond vectors (centre to neighbour, Å, nonzero), from ``coefficients``
    (A, K) eV; ``cutoff`` Å is the bond graph's."""
    order = coefficients.shape[-1]

    def one(v_ij, v_ik, d):
        r_ij, r_ik = jnp.linalg.norm(v_ij), jnp.linalg.norm(v_ik)
        # elementwise sums, not dots: geometry stays float32 under reduced matmul precision
        cos = jnp.clip(jnp.sum(v_ij * v_ik) / (r_ij * r_ik), -1.0, 1.0)
        envelope = polynomial_cutoff(r_ij, cutoff, envelope_order) * polynomial_cutoff(
            r_ik, cutoff, envelope_order
        )
        return envelope * jnp.sum(d * chebyshev(cos, order))

    energies, (grad_ij, grad_ik) = jax.vmap(jax.value_and_grad(one, argnums=(0, 1)))(
        vector_ij, vector_ik, coefficients
    )
    return energies, grad_ij, grad_ik
