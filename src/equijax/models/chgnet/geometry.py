"""Geometry shared by CHGNet's plain and memory-lean forms."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from equijax.typing import EdgeIndex, EdgeScalars, PairScalars


def pair_lengths(lengths: EdgeScalars, pair: EdgeIndex, n_pairs: int) -> PairScalars:
    """Length of each undirected pair as the mean of its directed edges' lengths, shape (P,).

    Unused pair slots (possible only in padding) get 1 Å so every basis stays finite.
    """
    total = jax.ops.segment_sum(lengths, pair, n_pairs)
    count = jax.ops.segment_sum(jnp.ones_like(lengths), pair, n_pairs)
    return jnp.where(count > 0, total / jnp.maximum(count, 1), 1.0)
