"""Spherical-grid layers (Facet-style): irreps -> sphere grid -> pointwise MLP -> irreps.

Each channel of x = C x [0e + 1o + ... + L] is a function on the sphere (e3nn's "integral"
normalization, as in `equijax.nn.tp`). `s2_grid_values` samples all channels on the Gauss-Legendre
x uniform grid of `equijax.nn.tp.s2grid`; a pointwise MLP mixes the C channels at every grid point
(the same weights at every point, so rotating the input rotates the grid function); and
`s2_grid_coefficients` projects back. A pointwise nonlinearity is not band-limited, so the grid is
chosen exact for a polynomial nonlinearity of degree ``degree`` (the tensor-product library's
chooser): for degree 2 the projection is exact and the layer exactly equivariant; beyond that,
equivariance holds up to the aliasing of higher harmonics, which shrinks as ``degree`` grows.
"""

from __future__ import annotations

from collections.abc import Callable

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp

from equijax.nn.tp import s2grid
from equijax.nn.tp.inputs import assemble, split_classes


def s2_resolution(lmax_in: int, lmax_out: int, degree: int) -> tuple[int, int]:
    """Exact (res_beta, res_alpha) for projecting a degree-``degree`` polynomial of the inputs."""
    return s2grid.resolution_for_degree(degree * lmax_in + lmax_out)


def _natural_chunks(x: e3nn.IrrepsArray, name: str) -> tuple[int, dict]:
    spherical = split_classes(x, name)
    if set(spherical.classes) != {1}:
        raise ValueError(
            f"{name} must have irreps of parity (-1)^l only (0e, 1o, 2e, ...), got "
            f"{spherical.irreps}: a pointwise nonlinearity does not preserve the other "
            "parity class"
        )
    return spherical.channels, spherical.classes[1]


def s2_grid_values(x: e3nn.IrrepsArray, lmax_out: int, resolution: tuple[int, int]) -> jax.Array:
    """Grid values √(4π) Σ x_lm Y_lm of every channel: (..., C, res_beta, res_alpha)."""
    _, chunks = _natural_chunks(x, "x")
    return _grid_values(chunks, lmax_out, resolution, x.dtype)


def _grid_values(chunks: dict, lmax_out: int, resolution: tuple[int, int], dtype) -> jax.Array:
    tables = s2grid.grid_tables(max(chunks), lmax_out, *resolution)
    return s2grid.to_grid(chunks, tables, dtype) * jnp.sqrt(4 * jnp.pi).astype(dtype)


def s2_grid_coefficients(
    values: jax.Array, lmax_in: int, lmax_out: int, resolution: tuple[int, int]
) -> e3nn.IrrepsArray:
    """Project grid values (..., C, res_beta, res_alpha) onto C x [0e + 1o + ... + lmax_out]."""
    tables = s2grid.grid_tables(lmax_in, lmax_out, *resolution)
    blocks = s2grid.from_grid(values, tables, range(lmax_out + 1))
    scale = 1.0 / (4 * jnp.pi)  # from_grid carries √(4π); the grid values carry another √(4π)
    blocks = {e3nn.Irrep(l, (-1) ** l): v * scale for l, v in blocks.items()}
    return assemble(blocks, values.shape[:-3], values.shape[-3], values.dtype)


def s2_activation(
    x: e3nn.IrrepsArray, fn: Callable, *, lmax_out: int | None = None, degree: int = 2
) -> e3nn.IrrepsArray:
    """Apply ``fn`` pointwise on the sphere: coefficients of fn(f) for every channel f of ``x``.

    ``x``: (..., C x [0e + 1o + ... + L]); ``fn`` maps grid values (..., C, b, a) elementwise or
    across channels. Exact (and exactly equivariant) when ``fn`` is a polynomial of degree ≤
    ``degree``; otherwise approximate, better with larger ``degree``.
    """
    _, chunks = _natural_chunks(x, "x")
    lmax_in = max(chunks)
    lmax_out = lmax_in if lmax_out is None else lmax_out
    resolution = s2_resolution(lmax_in, lmax_out, degree)
    values = _grid_values(chunks, lmax_out, resolution, x.dtype)
    return s2_grid_coefficients(fn(values), lmax_in, lmax_out, resolution)


class S2MLP(nn.Module):
    """Mix channels with an MLP at every point of a sphere grid, plus a separate scalar path.

    Attributes:
        features: output channels C_out.
        hidden: hidden width of the pointwise MLP (per head).
        heads: independent MLPs, each on C / heads of the input channels and producing
            C_out / heads outputs (C and C_out must divide).
        lmax_out: output degree (default: the input's).
        degree: polynomial degree the grid resolves exactly (see the module docstring). With a
            SiLU MLP the relative equivariance error is ~5e-2 at degree 2, ~4e-3 at 6 (default)
            and ~1e-4 at 12 (tests/nn/test_s2.py); the grid has (D//2+1)(D+1) points,
            D = degree · L + lmax_out.
        activation: the MLP's nonlinearity.

    Call: x (..., C x [0e + 1o + ... + L]) -> (..., C_out x [0e + ... + lmax_out]). The scalar
    path adds a Dense of x's 0e channels to the output's 0e channels.
    """

    features: int
    hidden: int = 32
    heads: int = 1
    lmax_out: int | None = None
    degree: int = 6
    activation: Callable = jax.nn.silu

    @nn.compact
    def __call__(self, x: e3nn.IrrepsArray) -> e3nn.IrrepsArray:
        channels, chunks = _natural_chunks(x, "x")
        if channels % self.heads or self.features % self.heads:
            raise ValueError(
                f"heads={self.heads} must divide the input channels ({channels}) and "
                f"features ({self.features})"
            )
        lmax_in = max(chunks)
        lmax_out = lmax_in if self.lmax_out is None else self.lmax_out
        resolution = s2_resolution(lmax_in, lmax_out, self.degree)
        grid = _grid_values(chunks, lmax_out, resolution, x.dtype)  # (..., C, b, a)
        points = jnp.moveaxis(grid, -3, -1)  # (..., b, a, C)
        points = points.reshape(points.shape[:-1] + (self.heads, channels // self.heads))
        hidden = self._per_head_dense("hidden", points, self.hidden)
        out = self._per_head_dense("out", self.activation(hidden), self.features // self.heads)
        out = out.reshape(out.shape[:-2] + (self.features,))
        y = s2_grid_coefficients(jnp.moveaxis(out, -1, -3), lmax_in, lmax_out, resolution)
        if 0 in chunks:
            scalars = nn.Dense(self.features, name="scalar_path")(chunks[0][..., 0])
            y = e3nn.from_chunks(
                y.irreps,
                [y.chunks[0] + scalars[..., None]] + list(y.chunks[1:]),
                y.shape[:-1],
                y.dtype,
            )
        return y

    def _per_head_dense(self, name: str, x: jax.Array, features: int) -> jax.Array:
        """(..., heads, n) -> (..., heads, features) with one kernel and bias per head."""
        init = nn.initializers.lecun_normal(in_axis=-2, out_axis=-1, batch_axis=(0,))
        kernel = self.param(f"{name}_kernel", init, (self.heads, x.shape[-1], features))
        bias = self.param(f"{name}_bias", nn.initializers.zeros, (self.heads, features))
        return jnp.einsum("...hn,hnf->...hf", x, kernel.astype(x.dtype)) + bias.astype(x.dtype)


__all__ = ["S2MLP", "s2_activation", "s2_grid_coefficients", "s2_grid_values", "s2_resolution"]
