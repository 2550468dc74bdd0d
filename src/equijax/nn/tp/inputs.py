"""Input checks and output assembly shared by the spherical-function (Gaunt) products.

A channel of an irreps feature with parity p_l = a (-1)^l for every l is one function on the
sphere of "parity class" a ∈ {+1, -1} (e3nn's p_val). Mixed inputs (say 0e + 1o + 1e) split into
two classes; products of classes a and b land in class a·b (scalar product) or -a·b (the odd,
cross-product-like term of the vector Gaunt product).
"""

from __future__ import annotations

from typing import NamedTuple

import e3nn_jax as e3nn
import jax.numpy as jnp


class SphericalInput(NamedTuple):
    """An irreps feature split into parity classes.

    channels: C (1 for a per-sample input such as edge harmonics).
    classes: {a: {l: array (..., C, 2l+1)}} for the classes present.
    irreps: the regrouped input irreps (for error messages and path listing).
    """

    channels: int
    classes: dict
    irreps: e3nn.Irreps

    def lmax(self, parity_class: int) -> int:
        """Largest l in a class."""
        return max(self.classes[parity_class])


def parity_class(ir: e3nn.Irrep) -> int:
    """+1 if p = (-1)^l (0e, 1o, 2e, ...), -1 if p = -(-1)^l (0o, 1e, 2o, ...)."""
    return ir.p * (-1) ** ir.l


def split_classes(x: e3nn.IrrepsArray, name: str) -> SphericalInput:
    """Split ``x`` into parity classes; every irrep must have the same multiplicity.

    Raises:
        TypeError: ``x`` is not an `e3nn.IrrepsArray`.
        ValueError: multiplicities differ, or an irrep appears twice after regrouping.
    """
    if not isinstance(x, e3nn.IrrepsArray):
        raise TypeError(f"{name} must be an e3nn.IrrepsArray, got {type(x).__name__}")
    x = x.regroup()
    muls = {mul for mul, _ in x.irreps}
    if len(muls) > 1:
        raise ValueError(
            f"{name} has irreps {x.irreps} with different multiplicities; spherical "
            "products need one multiplicity C for every irrep (channels are functions "
            "on the sphere). Map it with e3nn.flax.Linear to equal multiplicities."
        )
    if not x.irreps:
        raise ValueError(f"{name} has no irreps")
    classes: dict = {}
    for (mul, ir), chunk in zip(x.irreps, x.chunks):
        if chunk is None:
            chunk = jnp.zeros(x.shape[:-1] + (mul, ir.dim), x.dtype)
        classes.setdefault(parity_class(ir), {})[ir.l] = chunk
    return SphericalInput(muls.pop(), classes, x.irreps)


def check_pair(in1: SphericalInput, in2: SphericalInput) -> int:
    """Channels of the product: input 2 has 1 channel (broadcast) or the same C as input 1."""
    if in2.channels not in (1, in1.channels):
        raise ValueError(
            f"input 2 ({in2.irreps}) must have multiplicity 1 or the multiplicity of "
            f"input 1 ({in1.irreps}), got {in2.channels} vs {in1.channels}"
        )
    return in1.channels


def assemble(blocks: dict, leading_shape: tuple, channels: int, dtype) -> e3nn.IrrepsArray:
    """Build the output `IrrepsArray` from {Irrep: array (..., C, 2l+1)}, sorted like e3nn."""
    irreps = sorted(blocks)
    chunks = [blocks[ir] for ir in irreps]
    out_irreps = e3nn.Irreps([(channels, ir) for ir in irreps])
    return e3nn.from_chunks(out_irreps, chunks, leading_shape, dtype)


def leading_shape(x1: e3nn.IrrepsArray, x2: e3nn.IrrepsArray) -> tuple:
    """Broadcast leading shape of two inputs, or `ValueError` naming both shapes."""
    try:
        return tuple(jnp.broadcast_shapes(x1.shape[:-1], x2.shape[:-1]))
    except ValueError as err:
        raise ValueError(
            f"leading shapes {x1.shape[:-1]} and {x2.shape[:-1]} do not broadcast"
        ) from err
