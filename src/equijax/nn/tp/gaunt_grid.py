"""Gaunt tensor product on an exact spherical grid: the coefficients of f1 · f2.

Each channel of ``x1`` is the function f1 = √(4π) Σ x1_lm Y_lm on the sphere (e3nn's "integral"
normalization: Y orthonormal, x = 1·0e is the constant 1), likewise ``x2``; the output holds
x_lm = ∫ f1 f2 Y_lm dΩ / √(4π) for the requested l, i.e. √(4π) Σ x1 x2 ∫ Y Y Y (Gaunt
coefficients). It equals e3nn-jax's
``from_s2grid(to_s2grid(x1) * to_s2grid(x2))`` at a high enough resolution, and is computed
exactly at the smallest exact resolution (`equijax.nn.tp.s2grid`).

Three exact evaluation orders, one function:

- ``"grid"``: values of both functions on the grid, their product, and back (per channel
  O(res_beta · res_alpha · L)).
- ``"operator"`` (``x2`` with one channel, e.g. edge harmonics): multiplication by f2 on each
  β ring is a (2L1+1) × (2Lout+1) matrix M_b = Aᵀ diag(f2) A' built once per sample; every
  channel then costs a batched matmul on the m columns, and no per-channel grid is ever stored.
- ``"dense"``: the coupling tensor Γ of the same grid (`equijax.nn.tp.gaunt_tensor`).

"grid" and "operator" have a hand-written backward: the Gaunt tensor is symmetric, so the
cotangent of x1 is the Gaunt product of the output cotangent with x2 on the same grid, and the
cotangent of x2 the channel-summed product of the output cotangent with x1. "dense" is dense
matmuls, whose autodiff is already that.

``method="auto"`` picks the method measured fastest (`equijax.nn.tp.tuning`) for the shape and
the pass: the forward alone when the product is not differentiated, forward + backward when it
is (a `jax.custom_vjp` switches). Shapes never measured fall back to a FLOP count.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from equijax.nn.tp import s2grid, tuning
from equijax.nn.tp.gaunt_tensor import dense_flops, dense_product
from equijax.nn.tp.product import spherical_product

METHODS = ("auto", "grid", "operator", "dense")


def _flop_counts(channels, channels2, lmax1, lmax2, lmax_out, res_beta, res_alpha) -> dict:
    """Per-sample multiply-adds of the channel-dependent work of each possible method."""
    m1, m3 = 2 * lmax1 + 1, 2 * lmax_out + 1
    counts = {"grid": channels * res_beta * res_alpha * (m1 + 1 + m3)}
    dims = ((lmax1 + 1) ** 2, (lmax2 + 1) ** 2, (lmax_out + 1) ** 2)
    counts["dense"] = dense_flops(channels, channels2, *dims)
    if channels2 == 1:
        counts["operator"] = res_beta * res_alpha * m1 * m3 + channels * res_beta * m1 * m3
    return counts


def choose_method(
    method: str,
    channels1: int,
    channels2: int,
    lmax1: int,
    lmax_out: int,
    resolution: tuple[int, int],
    *,
    lmax2: int | None = None,
    batch: int = 1,
    pass_: str = "fwd",
) -> str:
    """Resolve ``method`` ("auto" -> the measured fastest, else the fewest FLOPs); `ValueError`
    if impossible. ``pass_`` is "fwd" or "fwdbwd" (see `equijax.nn.tp.tuning`)."""
    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {METHODS}")
    if method == "operator" and channels2 != 1:
        raise ValueError("method='operator' needs x2 with multiplicity 1 (one function per sample)")
    if method != "auto":
        return method
    lmax2 = lmax1 if lmax2 is None else lmax2
    counts = _flop_counts(channels1, channels2, lmax1, lmax2, lmax_out, *resolution)
    measured = tuning.fastest(
        "gaunt_grid", max(lmax1, lmax2, lmax_out), channels1, channels2, batch, pass_, counts
    )
    return measured or min(counts, key=counts.get)


def _sum_to(x: jax.Array, shape: tuple) -> jax.Array:
    """Sum the broadcast axes of ``x`` back to ``shape`` (a cotangent of a broadcast input)."""
    extra = x.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        extra + i for i, n in enumerate(shape) if n == 1 and x.shape[extra + i] != 1
    )
    return jnp.sum(x, axis=axes, keepdims=True).reshape(shape) if axes else x


def _operator_forward(c1, c2, t1, t2, ls, dtype) -> dict:
    g2 = s2grid.to_grid(c2, t2, dtype)[..., 0, :, :]  # (..., b, a): one function per sample
    m = jnp.einsum(
        "am,...ba,an->...bmn", jnp.asarray(t1.alpha_in, dtype), g2, jnp.asarray(t1.alpha_out, dtype)
    )
    f1 = s2grid.beta_synthesis(c1, t1.theta_in, t1.lmax_in, dtype)  # (..., C, b, m)
    hm = jnp.einsum("...cbm,...bmn->...cbn", f1, m)
    return s2grid.beta_analysis(hm, t1.theta_out_w, ls, t1.lmax_out)


def _grid_forward(c1, c2, t1, t2, ls, dtype) -> dict:
    h = s2grid.to_grid(c1, t1, dtype) * s2grid.to_grid(c2, t2, dtype)
    return s2grid.from_grid(h, t1, ls)


_FORWARD = {"grid": _grid_forward, "operator": _operator_forward}


def _transforms_product(method: str, ctx, ls: tuple, dtype):
    """The grid or operator product with the symmetric hand-written backward (a custom VJP)."""
    forward = _FORWARD[method]
    lmax1, lmax2, lmax_out, res = ctx.lmax1, ctx.lmax2, ctx.lmax_out, ctx.resolution

    @jax.custom_vjp
    def product(c1, c2):
        return forward(c1, c2, *ctx.tables(), ls, dtype)

    def product_fwd(c1, c2):
        return product(c1, c2), (c1, c2)

    def product_bwd(residuals, g):
        c1, c2 = residuals
        t1, t2 = ctx.tables()
        tg1 = s2grid.grid_tables(lmax_out, lmax1, *res)  # g in, x1's l out
        tg2 = s2grid.grid_tables(lmax_out, lmax2, *res)  # g in, x2's l out
        # x1's cotangent: the Gaunt product of g with x2, projected onto x1's l (same grid)
        d1 = forward(g, c2, tg1, t2, tuple(sorted(c1)), dtype)
        # x2's cotangent: Σ over channels (and broadcast axes) of g · f1 on the grid
        h = s2grid.to_grid(g, tg1, dtype) * s2grid.to_grid(c1, t1, dtype)
        shape2 = next(iter(c2.values())).shape[:-1]
        h = _sum_to(h, shape2 + h.shape[-2:])
        d2 = s2grid.from_grid(h, tg2, tuple(sorted(c2)))
        d1 = {l: _sum_to(v, c1[l].shape).astype(c1[l].dtype) for l, v in d1.items()}
        d2 = {l: _sum_to(v, c2[l].shape).astype(c2[l].dtype) for l, v in d2.items()}
        return d1, d2

    product.defvjp(product_fwd, product_bwd)
    return product


def _method_product(method: str, ctx, ls: tuple, dtype):
    if method == "dense":
        return lambda c1, c2: dense_product(c1, c2, ls, ctx.resolution, dtype)
    return _transforms_product(method, ctx, ls, dtype)


def _per_pass_product(forward_method: str, training_method: str, ctx, ls: tuple, dtype):
    """``forward_method`` when not differentiated, ``training_method``'s VJP when it is."""
    forward = _method_product(forward_method, ctx, ls, dtype)
    training = _method_product(training_method, ctx, ls, dtype)
    if forward_method == training_method:
        return forward

    @jax.custom_vjp
    def product(c1, c2):
        return forward(c1, c2)

    def product_fwd(c1, c2):
        return jax.vjp(training, c1, c2)

    def product_bwd(vjp, g):
        return vjp(g)

    product.defvjp(product_fwd, product_bwd)
    return product


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
        method: "auto", "grid", "operator" or "dense" (see the module docstring); results are
            identical.

    Returns:
        `e3nn.IrrepsArray` (broadcast leading shape, C x [realized irreps sorted]): for each output
        irrep of parity class c = a·b, the coefficients of f1·f2. Only couplings with l1 + l2 + l3 even exist
        (`paths("gaunt_grid", ...)`).
    """

    def blocks(c1, c2, even_ls, odd_ls, product_class, dtype, ctx):
        lead = jnp.broadcast_shapes(
            next(iter(c1.values())).shape[:-2], next(iter(c2.values())).shape[:-2]
        )
        args = (ctx.channels1, ctx.channels2, ctx.lmax1, ctx.lmax_out, ctx.resolution)
        options = {"lmax2": ctx.lmax2, "batch": math.prod(lead)}
        chosen = [choose_method(method, *args, pass_=p, **options) for p in ("fwd", "fwdbwd")]
        product = _per_pass_product(*chosen, ctx, tuple(even_ls), dtype)
        return [(product_class, product(c1, c2))]

    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {METHODS}")
    return spherical_product(
        "gaunt_grid", x1, x2, blocks, filter_ir_out=filter_ir_out, resolution=resolution
    )
