"""Reordering column pieces between per-block arrays and one flat output, in both directions.

A product computed per block (e.g. per irrep of x1: (..., C, K_b)) must come out in e3nn's sorted
layout: a flat (..., Σ C·w) array whose pieces come from many blocks. Written with slices and one
concatenation, the forward is a single copy, but JAX's transpose of each slice is a full-size
pad, so the backward costs (number of pieces) × (block size). Here the two directions are each
other's VJP, so every pass of every order is one copy.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Piece(NamedTuple):
    """Columns [start, start + width) of block ``block``, all C rows, as one flat output span."""

    block: int
    start: int
    width: int


def _flatten(blocks, pieces):
    parts = []
    for p in pieces:
        b = blocks[p.block][..., p.start : p.start + p.width]
        parts.append(b.reshape(b.shape[:-2] + (b.shape[-2] * p.width,)))
    return jnp.concatenate(parts, axis=-1)


def _unflatten(flat, pieces, widths, rows):
    offsets, at = [], 0
    for p in pieces:
        offsets.append(at)
        at += rows[p.block] * p.width
    blocks = []
    for b, width in enumerate(widths):
        mine = sorted((p.start, k) for k, p in enumerate(pieces) if p.block == b)
        parts = [
            flat[..., offsets[k] : offsets[k] + rows[b] * pieces[k].width].reshape(
                flat.shape[:-1] + (rows[b], pieces[k].width)
            )
            for _, k in mine
        ]
        if sum(pieces[k].width for _, k in mine) != width:
            raise ValueError(f"pieces {pieces} do not tile block {b} of width {width}")
        blocks.append(parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1))
    return blocks


def permutation(pieces: tuple, widths: tuple, rows: tuple):
    """(to_flat, to_blocks): blocks [(..., rows[b], widths[b])] <-> flat (..., Σ rows[b] widths[b]).

    ``pieces`` lists the output spans in order and must tile every block exactly once.
    """

    @jax.custom_vjp
    def to_flat(blocks):
        return _flatten(blocks, pieces)

    @jax.custom_vjp
    def to_blocks(flat):
        return _unflatten(flat, pieces, widths, rows)

    to_flat.defvjp(lambda blocks: (to_flat(blocks), None), lambda _, g: (to_blocks(g),))
    to_blocks.defvjp(lambda flat: (to_blocks(flat), None), lambda _, g: (to_flat(list(g)),))
    return to_flat, to_blocks
