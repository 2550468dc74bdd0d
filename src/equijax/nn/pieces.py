"""Messages in fixed-size pieces: one `jax.lax.scan` step per piece of edges or angles, with a
checkpointed body, so that the forward and the backward pass hold one piece's activations at a
time (the memory-lean mode of large structures)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp


def even_chunk(n: int, chunk: int) -> int:
    """The largest divisor of ``n`` not above ``chunk`` when it is at least ``chunk / 4`` (the
    pieces then tile ``n`` and the inputs need no padded copy), else ``chunk``."""
    for size in range(chunk, max(chunk // 4, 1) - 1, -1):
        if n % size == 0:
            return size
    return chunk


def scan_pieces(
    messages_of: Callable[..., jax.Array],
    n: int,
    chunk: int,
    indexed: Sequence[jax.Array],
    reduce: tuple[jax.Array, Callable] | None = None,
):
    """``messages_of(*indexed)`` computed in pieces of ``chunk`` items (all at once when
    ``chunk`` is 0 or not below ``n``).

    Args:
        messages_of: per-piece messages, ``(c, ...)`` from the pieces ``(c, ...)`` of
            ``indexed``; it may close over whole arrays (atom features, params), whose
            cotangents the backward pass accumulates piece by piece.
        n: the number of items (the leading size of every ``indexed`` array).
        chunk: items per piece. A piece is recomputed in the backward pass (a checkpointed
            scan body), and only one piece's activations are alive at a time.
        indexed: per-item arrays, leading axis ``n``.
        reduce: None to return the messages of all items, ``(n, ...)``; else ``(init, fn)``
            with ``fn(acc, messages, *piece_arrays)`` accumulating (e.g. a segment sum into
            ``init``'s shape), and the accumulation is returned.

    When the pieces do not tile ``n``, the last one repeats the last item (sorted indices stay
    sorted) and its repeats' messages are zeroed.
    """
    if not 0 < chunk < n:
        messages = messages_of(*indexed)
        return messages if reduce is None else reduce[1](reduce[0], messages, *indexed)
    chunk = even_chunk(n, chunk)
    pieces = -(-n // chunk)
    pad = pieces * chunk - n
    valid = (jnp.arange(pieces * chunk) < n).reshape(pieces, chunk) if pad else None
    stacked = [
        (jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1), mode="edge") if pad else a).reshape(
            (pieces, chunk) + a.shape[1:]
        )
        for a in indexed
    ]

    def body(acc, xs):
        mask, *arrays = xs
        messages = messages_of(*arrays)
        if mask is not None:
            messages = messages * mask.reshape(mask.shape + (1,) * (messages.ndim - 1))
        if reduce is None:
            return acc, messages
        return reduce[1](acc, messages, *arrays), None

    init = 0.0 if reduce is None else reduce[0]
    acc, ys = jax.lax.scan(jax.checkpoint(body), init, (valid, *stacked))
    if reduce is None:
        return ys.reshape((pieces * chunk,) + ys.shape[2:])[:n]
    return acc
