"""Clebsch-Gordan tensor product: every coupling, the same output as `e3nn.tensor_product`.

Output layout and normalization are e3nn-jax's (``irrep_normalization`` "component" by default,
output sorted and regrouped), so it is a drop-in replacement. The computation differs:

- ``x2`` with multiplicity 1 for every irrep (channelwise, e.g. node features ⊗ edge harmonics):
  per irrep ir1 of ``x1`` one tensor T = x2 · C_ir1 of shape (..., d1, K) is formed per sample,
  K summing the output dims of all paths from ir1 (each irrep block of x2 meets only its own
  coupling blocks), then every channel is one batched matmul (..., mul1, d1) @ (..., d1, K).
  Both steps are dense matmuls, so their derivatives of every order are too.
- otherwise (``x2`` with multiplicities): one contraction per (ir1, ir2) pair over all its paths,
  giving e3nn's (mul1 · mul2) outer-product channels.
"""

from __future__ import annotations

import functools

import e3nn_jax as e3nn
import jax.numpy as jnp
import numpy as np

from equijax.nn.tp import layout
from equijax.nn.tp.inputs import leading_shape
from equijax.nn.tp.paths import CouplingPath, irrep_filter


@functools.cache
def _cg(l1: int, l2: int, l3: int, normalization: str) -> np.ndarray:
    c = np.asarray(e3nn.clebsch_gordan(l1, l2, l3), np.float64)
    scale = {
        "component": np.sqrt(2 * l3 + 1),
        "norm": np.sqrt((2 * l1 + 1) * (2 * l2 + 1)),
        "none": 1.0,
    }
    if normalization not in scale:
        raise ValueError(f"irrep_normalization={normalization!r}: expected one of {list(scale)}")
    return c * scale[normalization]


def _outputs(ir1, ir2, keep):
    return [ir3 for ir3 in ir1 * ir2 if keep is None or ir3 in keep]


def clebsch_gordan(x1, x2, *, filter_ir_out=None, irrep_normalization: str | None = None):
    """Unweighted Clebsch-Gordan tensor product of two `e3nn.IrrepsArray`.

    Args:
        x1: (..., irreps1).
        x2: (..., irreps2); the leading shapes of x1 and x2 broadcast.
        filter_ir_out: output irreps to keep (default all).
        irrep_normalization: "component" (default, e3nn's config), "norm" or "none".

    Returns:
        `e3nn.IrrepsArray` equal to ``e3nn.tensor_product(x1, x2, filter_ir_out=...)``: for each
        path, mul1·mul2 channels (mul1 when x2 has multiplicity 1), sorted and regrouped.
    """
    for name, x in (("x1", x1), ("x2", x2)):
        if not isinstance(x, e3nn.IrrepsArray):
            raise TypeError(f"{name} must be an e3nn.IrrepsArray, got {type(x).__name__}")
    keep = irrep_filter(filter_ir_out)
    norm = irrep_normalization or e3nn.config("irrep_normalization")
    lead = leading_shape(x1, x2)
    x1, x2 = x1.regroup(), x2.regroup()
    dtype = jnp.result_type(x1.dtype, x2.dtype)
    out = None
    if all(mul == 1 for mul, _ in x2.irreps):  # channelwise
        if len({mul for mul, _ in x1.irreps}) == 1:
            out = _fused_small(x1, x2, keep, norm, dtype, lead)
        if out is None:
            out = _sorted_layout(*_channelwise_blocks(x1, x2, keep, norm, dtype, lead))
    else:
        out = _sorted_layout(*_outer_blocks(x1, x2, keep, norm, dtype, lead))
    if out is None:
        raise ValueError(
            f"no coupling of {x1.irreps} and {x2.irreps} reaches filter_ir_out={filter_ir_out}"
        )
    return out


def clebsch_gordan_paths(
    x1, x2, *, filter_ir_out=None, irrep_normalization: str | None = None
) -> list:
    """Per-path outputs of the channelwise product: [(CouplingPath, array (..., mul1, d3))].

    ``x2`` must have multiplicity 1 for every irrep. Used by `TensorProduct` for per-path weights.
    """
    keep = irrep_filter(filter_ir_out)
    norm = irrep_normalization or e3nn.config("irrep_normalization")
    lead = leading_shape(x1, x2)
    x1, x2 = x1.regroup(), x2.regroup()
    if any(mul != 1 for mul, _ in x2.irreps):
        raise ValueError(
            f"channelwise Clebsch-Gordan needs x2 with multiplicity 1, got {x2.irreps}"
        )
    dtype = jnp.result_type(x1.dtype, x2.dtype)
    blocks, labels = _channelwise_blocks(x1, x2, keep, norm, dtype, lead)
    return [
        (CouplingPath(*irs), blocks[k][..., column : column + irs[2].dim])
        for irs, k, column in labels
    ]


FUSED_MAX_MACS = 2_000
"""Largest per-sample dense cost (multiply-adds) for which `_fused_small` is used: below it the
product is a few tiny operations, whose count, not their FLOPs, sets the time."""


@functools.cache
def _fused_plan(irreps1: e3nn.Irreps, irreps2: e3nn.Irreps, keep, norm: str):
    """Dense coupling W (D2, d1, K) with K in e3nn's sorted output order, and that order."""
    paths = []  # (slice of x1's per-channel dims, slice of x2, ir3), in e3nn's loop order
    start1 = 0
    for _, ir1 in irreps1:
        start2 = 0
        for _, ir2 in irreps2:
            for ir3 in _outputs(ir1, ir2, keep):
                paths.append((start1, ir1, start2, ir2, ir3))
            start2 += ir2.dim
        start1 += ir1.dim
    if not paths:
        return None
    mul = irreps1[0].mul
    order = e3nn.Irreps([(mul, p[4]) for p in paths]).sort()
    d1 = sum(ir.dim for _, ir in irreps1)
    coupling = np.zeros((irreps2.dim, d1, sum(p[4].dim for p in paths)))
    column, blocks = 0, []
    for q in order.inv:
        s1, ir1, s2, ir2, ir3 = paths[q]
        cg = _cg(ir1.l, ir2.l, ir3.l, norm)  # (d1, d2, d3)
        coupling[s2 : s2 + ir2.dim, s1 : s1 + ir1.dim, column : column + ir3.dim] = cg.transpose(
            1, 0, 2
        )
        blocks.append((column, ir3.dim))
        column += ir3.dim
    return coupling, tuple(blocks), order.irreps.regroup()


def _fused_small(x1, x2, keep, norm, dtype, lead):
    """Small products as three dense operations: T = x2 · W (all paths at once), every channel
    by one batched matmul, one copy into e3nn's layout. None when too large (see FUSED_MAX_MACS)."""
    plan = _fused_plan(x1.irreps, x2.irreps, keep, norm)
    if plan is None:
        return None
    coupling, blocks, irreps_out = plan
    mul = x1.irreps[0].mul
    d2, d1, k = coupling.shape
    if d1 * k * (d2 + mul) > FUSED_MAX_MACS:
        return None
    channels_first = jnp.concatenate(
        [
            x1.array[..., s : s + mul * ir.dim].reshape(x1.shape[:-1] + (mul, ir.dim))
            for s, (_, ir) in zip(np.cumsum([0] + [m * ir.dim for m, ir in x1.irreps]), x1.irreps)
        ],
        axis=-1,
    ).astype(dtype)  # (..., C, d1)
    t = jnp.einsum("...j,jik->...ik", x2.array.astype(dtype), jnp.asarray(coupling, dtype))
    out = jnp.einsum("...ci,...ik->...ck", channels_first, t)  # (..., C, K)
    out = jnp.broadcast_to(out, lead + out.shape[-2:])
    pieces = tuple(layout.Piece(0, c, d) for c, d in blocks)
    to_flat, _ = layout.permutation(pieces, (k,), (mul,))
    return e3nn.IrrepsArray(irreps_out, to_flat([out]))


def _channelwise_blocks(x1, x2, keep, norm, dtype, lead):
    """Per irrep ir1 of x1: T = [x2_ir2 · C_(ir1, ir2, ·)] over ir2 (one small matmul per ir2,
    touching only that irrep's block of x2), then every channel by one batched matmul.

    Returns (blocks [(lead, mul1, K_ir1)], labels [((ir1, ir2, ir3), block index, column)]).
    """
    x2_chunks = [
        jnp.zeros(x2.shape[:-1] + (1, ir.dim), dtype) if c is None else c.astype(dtype)
        for (_, ir), c in zip(x2.irreps, x2.chunks)
    ]
    blocks, labels = [], []
    for (mul1, ir1), c1 in zip(x1.irreps, x1.chunks):
        pieces, column = [], 0
        for (_, ir2), c2 in zip(x2.irreps, x2_chunks):
            outs = _outputs(ir1, ir2, keep)
            if not outs:
                continue
            for ir3 in outs:
                labels.append(((ir1, ir2, ir3), len(blocks), column))
                column += ir3.dim
            coupling = np.concatenate([_cg(ir1.l, ir2.l, ir3.l, norm) for ir3 in outs], -1)
            pieces.append(
                jnp.einsum("...j,ijk->...ik", c2[..., 0, :], jnp.asarray(coupling, dtype))
            )
        if not pieces:
            continue
        if c1 is None:
            block = jnp.zeros(lead + (mul1, column), dtype)
        else:
            t = pieces[0] if len(pieces) == 1 else jnp.concatenate(pieces, axis=-1)  # (..., d1, K)
            block = jnp.einsum("...ui,...ik->...uk", c1.astype(dtype), t)
        blocks.append(jnp.broadcast_to(block, lead + block.shape[-2:]))
    return blocks, labels


def _sorted_layout(blocks: list, labels: list) -> e3nn.IrrepsArray | None:
    """Per-block products in e3nn's sorted layout: one permuting copy whose VJP is the inverse
    copy (`equijax.nn.tp.layout`); None without any block. Arguments as `_channelwise_blocks`."""
    if not blocks:
        return None
    rows = tuple(b.shape[-2] for b in blocks)
    order = e3nn.Irreps([(rows[k], ir3) for (_, _, ir3), k, _ in labels]).sort()
    pieces = tuple(layout.Piece(labels[q][1], labels[q][2], labels[q][0][2].dim) for q in order.inv)
    to_flat, _ = layout.permutation(pieces, tuple(b.shape[-1] for b in blocks), rows)
    return e3nn.IrrepsArray(order.irreps.regroup(), to_flat(blocks))


def _outer_blocks(x1, x2, keep, norm, dtype, lead):
    """e3nn's mul1·mul2 outer channels, one contraction per (ir1, ir2) pair over all its paths.

    Returns (blocks [(lead, mul1·mul2, K)], labels) as `_channelwise_blocks`.
    """
    blocks, labels = [], []
    for (mul1, ir1), c1 in zip(x1.irreps, x1.chunks):
        for (mul2, ir2), c2 in zip(x2.irreps, x2.chunks):
            outs = _outputs(ir1, ir2, keep)
            if not outs:
                continue
            column = 0
            for ir3 in outs:
                labels.append(((ir1, ir2, ir3), len(blocks), column))
                column += ir3.dim
            if c1 is None or c2 is None:
                block = jnp.zeros(lead + (mul1 * mul2, column), dtype)
            else:
                coupling = np.concatenate([_cg(ir1.l, ir2.l, ir3.l, norm) for ir3 in outs], -1)
                block = jnp.einsum(
                    "...ui,...vj,ijk->...uvk",
                    c1.astype(dtype),
                    c2.astype(dtype),
                    jnp.asarray(coupling, dtype),
                )
                block = block.reshape(block.shape[:-3] + (mul1 * mul2, column))
            blocks.append(jnp.broadcast_to(block, lead + block.shape[-2:]))
    return blocks, labels
