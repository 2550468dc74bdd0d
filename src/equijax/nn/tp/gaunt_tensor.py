"""The Gaunt product through its coupling tensor: the ``"dense"`` method of `gaunt_s2grid`.

The Gaunt product is bilinear, out_k = Σ_ij Γ[i, j, k] x1_i x2_j, and Γ follows from the same
exact grid as the other methods: Γ[i, j, k] = √(4π) Σ_g w_g Y_i(g) Y_j(g) Y_k(g) (float64, built
once per shape). With one function per sample in ``x2`` (edge harmonics) the product is a linear
map of every channel of ``x1``, T = x2 · Γ (one large matmul, (N, d2) @ (d2, d1·d_out)), applied
to all channels by one batched matmul, (C, d1) @ (d1, d_out) per sample. Both are dense matmuls,
so their reverse- and second-order derivatives are dense matmuls too, which is why this method
wins training passes at the L of interatomic potentials (L ≤ 6) on a CPU: the grid's many small
transforms cost more than the O(L⁶) coupling there (`equijax bench tp`).
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from equijax.nn.tp import sh_tables


def _harmonics_on_grid(ls: tuple, res_beta: int, res_alpha: int) -> np.ndarray:
    """Y_lm at every grid node for l in ``ls`` (m = -l..l): (res_beta · res_alpha, Σ (2l+1))."""
    beta, alpha, _ = sh_tables.gauss_legendre_grid(res_beta, res_alpha)
    top = max(ls)
    theta = sh_tables.theta(top, beta)  # (b, l, top + m)
    phi = sh_tables.alpha_basis(top, alpha)  # (a, top + m)
    columns = [
        theta[:, l, top + m][:, None] * phi[None, :, top + m] for l in ls for m in range(-l, l + 1)
    ]
    return np.stack(columns, axis=-1).reshape(res_beta * res_alpha, -1)


@functools.cache
def gaunt_coupling(
    ls1: tuple, ls2: tuple, ls_out: tuple, resolution: tuple[int, int]
) -> np.ndarray:
    """Γ of the grid product on ``resolution``: (Σ_ls1 (2l+1), Σ_ls2 (2l+1), Σ_ls_out (2l+1)).

    Equal to √(4π) ∫ Y_i Y_j Y_k dΩ when the grid is exact (`s2grid.grid_resolution`); on any
    other grid it equals the grid method's aliased product, so every method gives one function.
    """
    res_beta, res_alpha = resolution
    _, _, weight = sh_tables.gauss_legendre_grid(res_beta, res_alpha)
    w = np.repeat(weight, res_alpha) * np.sqrt(4 * np.pi)
    y1 = _harmonics_on_grid(ls1, res_beta, res_alpha)
    y2 = _harmonics_on_grid(ls2, res_beta, res_alpha)
    y3 = _harmonics_on_grid(ls_out, res_beta, res_alpha) * w[:, None]
    coupling = np.einsum("gi,gj,gk->ijk", y1, y2, y3)
    coupling[np.abs(coupling) < 1e-13] = 0.0  # exact zeros stay zero (selection rules)
    return coupling


def dense_product(c1: dict, c2: dict, ls_out, resolution: tuple[int, int], dtype) -> dict:
    """Gaunt product of {l: (..., C, 2l+1)} and {l: (..., 1 or C, 2l+1)} -> {l: (..., C, 2l+1)}.

    ``c2`` with one channel is applied as T = x2 · Γ, then (C, d1) @ (d1, d_out) per sample;
    with C channels (channelwise) as (x1 ⊗ x2) · Γ per channel.
    """
    ls1, ls2, ls_out = tuple(sorted(c1)), tuple(sorted(c2)), tuple(ls_out)
    coupling = jnp.asarray(gaunt_coupling(ls1, ls2, ls_out, tuple(resolution)), dtype)
    a = jnp.concatenate([c1[l].astype(dtype) for l in ls1], axis=-1)  # (..., C, d1)
    b = jnp.concatenate([c2[l].astype(dtype) for l in ls2], axis=-1)  # (..., 1 or C, d2)
    if b.shape[-2] == 1:
        operator = jnp.einsum("...j,ijk->...ik", b[..., 0, :], coupling)  # (..., d1, d_out)
        out = jnp.einsum("...ci,...ik->...ck", a, operator)
    else:
        out = jnp.einsum("...ci,...cj,ijk->...ck", a, b, coupling)
    blocks, start = {}, 0
    for l in ls_out:
        blocks[l] = out[..., start : start + 2 * l + 1]
        start += 2 * l + 1
    return blocks


def dense_flops(channels: int, channels2: int, dim1: int, dim2: int, dim_out: int) -> int:
    """Per-sample multiply-adds of `dense_product` (for the FLOP-count fallback of "auto")."""
    if channels2 == 1:
        return dim1 * dim2 * dim_out + channels * dim1 * dim_out
    return channels * dim1 * dim2 * dim_out
