"""`equijax.nn.tp.layout.permutation`: the two directions invert each other, and their VJPs
(each the other direction) agree with autodiff of plain slicing and with finite differences."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from equijax.nn.tp import layout

pytestmark = pytest.mark.usefixtures("x64")

# two blocks of 3 and 2 rows; the output interleaves their column ranges
PIECES = (
    layout.Piece(1, 2, 1),
    layout.Piece(0, 0, 3),
    layout.Piece(1, 0, 2),
    layout.Piece(0, 3, 1),
)
WIDTHS, ROWS = (4, 3), (3, 2)


def _naive_flat(blocks):
    parts = [
        blocks[p.block][..., p.start : p.start + p.width].reshape(
            blocks[p.block].shape[:-2] + (-1,)
        )
        for p in PIECES
    ]
    return jnp.concatenate(parts, axis=-1)


def test_round_trip_and_gradients():
    rng = np.random.default_rng(0)
    blocks = [jnp.asarray(rng.normal(size=(5, r, w))) for r, w in zip(ROWS, WIDTHS)]
    to_flat, to_blocks = layout.permutation(PIECES, WIDTHS, ROWS)
    flat = to_flat(blocks)
    np.testing.assert_array_equal(flat, _naive_flat(blocks))
    for back, block in zip(to_blocks(flat), blocks):
        np.testing.assert_array_equal(back, block)
    weights = jnp.asarray(rng.normal(size=flat.shape))
    ours = jax.grad(lambda b: jnp.sum(weights * to_flat(b) ** 2))(blocks)
    want = jax.grad(lambda b: jnp.sum(weights * _naive_flat(b) ** 2))(blocks)
    for a, b in zip(ours, want):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    check_grads(lambda b: to_flat(b) ** 2, (blocks,), order=2, modes=["rev"])
    check_grads(lambda f: [x**2 for x in to_blocks(f)], (flat,), order=2, modes=["rev"])


def test_pieces_must_tile_the_blocks():
    _, to_blocks = layout.permutation(PIECES[:-1], WIDTHS, ROWS)
    with pytest.raises(ValueError, match="do not tile"):
        to_blocks(jnp.zeros((5, 3 * 3 + 2 * 3)))
