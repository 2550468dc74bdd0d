"""The driver shared by the spherical-grid products: checks, exact grid, class pairs, output.

Each channel of an input is a function on the sphere; inputs with mixed parities split into parity
classes (`equijax.nn.tp.inputs`) and every pair of classes is multiplied separately.
"""

from __future__ import annotations

from typing import NamedTuple

import e3nn_jax as e3nn
import jax.numpy as jnp

from equijax.nn.tp import s2grid
from equijax.nn.tp.inputs import (
    assemble,
    check_pair,
    leading_shape,
    parity_class,
    split_classes,
)
from equijax.nn.tp.paths import paths


class ProductContext(NamedTuple):
    """What a product's block function needs besides the inputs."""

    lmax1: int
    lmax2: int
    lmax_out: int
    resolution: tuple[int, int]  # exact (res_beta, res_alpha) unless given
    channels1: int
    channels2: int

    def tables(self) -> tuple[s2grid.GridTables, s2grid.GridTables]:
        """Cached grid tables for input 1 and input 2 (outputs up to lmax_out)."""
        return (
            s2grid.grid_tables(self.lmax1, self.lmax_out, *self.resolution),
            s2grid.grid_tables(self.lmax2, self.lmax_out, *self.resolution),
        )


def spherical_product(kind: str, x1, x2, blocks_fn, *, filter_ir_out, resolution=None):
    """Check inputs, pick the exact grid, run ``blocks_fn`` per parity-class pair, assemble.

    ``blocks_fn(c1, c2, even_ls, odd_ls, product_class, dtype, ctx)`` returns
    [(output parity class, {l: (..., C, 2l+1)})] for one pair of input classes
    (c1, c2: {l: (..., C or 1, 2l+1)}, ctx: `ProductContext`).
    """
    in1, in2 = split_classes(x1, "x1"), split_classes(x2, "x2")
    channels = check_pair(in1, in2)
    lead = leading_shape(x1, x2)
    realized = paths(kind, in1.irreps, in2.irreps, filter_ir_out)
    if not realized:
        raise ValueError(
            f"no {kind} coupling of {in1.irreps} and {in2.irreps} reaches "
            f"filter_ir_out={filter_ir_out}"
        )
    if resolution is None:
        resolution = s2grid.grid_resolution(kind, in1.irreps, in2.irreps, filter_ir_out)
    if len(resolution) != 2 or any(int(r) != r or r < 1 for r in resolution):
        raise ValueError(
            f"resolution must be two positive integers (res_beta, res_alpha), got {resolution}"
        )
    ctx = ProductContext(
        lmax1=max(l for c in in1.classes.values() for l in c),
        lmax2=max(l for c in in2.classes.values() for l in c),
        lmax_out=max(p.ir_out.l for p in realized),
        resolution=tuple(int(r) for r in resolution),
        channels1=channels,
        channels2=in2.channels,
    )
    dtype = jnp.result_type(x1.dtype, x2.dtype)
    blocks: dict = {}
    for a, c1 in in1.classes.items():
        for b, c2 in in2.classes.items():
            pair = [p for p in realized if parity_class(p.ir1) == a and parity_class(p.ir2) == b]
            even = sorted({p.ir_out.l for p in pair if not p.odd})
            odd = sorted({p.ir_out.l for p in pair if p.odd})
            if not even and not odd:
                continue
            results = blocks_fn(c1, c2, even, odd, a * b, dtype, ctx)
            for out_class, values in results:
                for l, v in values.items():
                    ir = _irrep(l, out_class)
                    blocks[ir] = v if ir not in blocks else blocks[ir] + v
    blocks = {ir: jnp.broadcast_to(v, lead + v.shape[-2:]) for ir, v in blocks.items()}
    return assemble(blocks, lead, channels, dtype)


def _irrep(l: int, parity_class_: int) -> e3nn.Irrep:
    return e3nn.Irrep(l, parity_class_ * (-1) ** l)
