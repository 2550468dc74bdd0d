"""Which couplings each tensor-product kind realizes: the expressivity report.

A path is a coupling (l1, p1) ⊗ (l2, p2) → (l3, p3) with |l1 - l2| ≤ l3 ≤ l1 + l2 and p3 = p1 p2.

- ``cg``: every such coupling (Clebsch-Gordan).
- ``gaunt_grid`` and ``gaunt_fourier``: only l1 + l2 + l3 even (the product of two functions on the
  sphere is symmetric, so the antisymmetric couplings such as the cross product are missing).
- ``vector_gaunt``: every coupling: the even ones from the scalar product of the two functions, the
  odd ones from r̂ · (∇f1 × ∇f2) (vector spherical harmonics).
"""

from __future__ import annotations

from typing import NamedTuple

import e3nn_jax as e3nn

KINDS = ("cg", "gaunt_grid", "gaunt_fourier", "vector_gaunt")
WEIGHTINGS = ("per_path", "per_channel")  # plus "none": the plain product


class CouplingPath(NamedTuple):
    """One coupling ir1 ⊗ ir2 → ir_out realized by a tensor product."""

    ir1: e3nn.Irrep
    ir2: e3nn.Irrep
    ir_out: e3nn.Irrep

    @property
    def odd(self) -> bool:
        """True for l1 + l2 + l3 odd (antisymmetric couplings such as the cross product)."""
        return (self.ir1.l + self.ir2.l + self.ir_out.l) % 2 == 1

    def __str__(self) -> str:
        return f"{self.ir1} x {self.ir2} -> {self.ir_out}"


def check_kind(kind: str) -> str:
    """Return ``kind`` or raise `ValueError` listing the known kinds."""
    if kind not in KINDS:
        raise ValueError(
            f"unknown tensor-product kind {kind!r}; expected one of {', '.join(KINDS)}"
        )
    return kind


def irrep_filter(filter_ir_out) -> frozenset | None:
    """Normalise ``filter_ir_out`` (None, "0e+1o", Irreps, or a list of irreps) to a set of Irrep."""
    if filter_ir_out is None:
        return None
    if isinstance(filter_ir_out, str):
        filter_ir_out = e3nn.Irreps(filter_ir_out)
    if isinstance(filter_ir_out, e3nn.Irreps):
        return frozenset(ir for _, ir in filter_ir_out)
    return frozenset(e3nn.Irrep(ir) for ir in filter_ir_out)


def _unique_irreps(irreps) -> list:
    irreps = e3nn.Irreps(irreps).regroup()
    return [ir for _, ir in irreps]


def paths(kind: str, irreps_in1, irreps_in2, irreps_out=None) -> list[CouplingPath]:
    """The couplings ``kind`` realizes between two inputs, restricted to ``irreps_out`` if given.

    Args:
        kind: "cg", "gaunt_grid", "gaunt_fourier" or "vector_gaunt".
        irreps_in1: irreps of the first input (multiplicities are ignored).
        irreps_in2: irreps of the second input (multiplicities are ignored).
        irreps_out: optional filter on the output irreps (multiplicities are ignored).

    Returns:
        The paths in the order (ir1, ir2, ir_out) of e3nn's tensor product loop.
    """
    check_kind(kind)
    keep = irrep_filter(irreps_out)
    out = []
    for ir1 in _unique_irreps(irreps_in1):
        for ir2 in _unique_irreps(irreps_in2):
            for ir3 in ir1 * ir2:
                if keep is not None and ir3 not in keep:
                    continue
                path = CouplingPath(ir1, ir2, ir3)
                if path.odd and kind in ("gaunt_grid", "gaunt_fourier"):
                    continue
                out.append(path)
    return out


def num_weights(kind: str, irreps_in1, irreps_in2, irreps_out, weights: str = "per_channel") -> int:
    """Number of learned weights of `TensorProduct(kind, irreps_out, weights=...)` on these inputs.

    ``per_path`` (kind "cg" only): one weight per path and channel of input 1.
    ``per_channel``: one weight per (channel, irrep) of input 1, per irrep of input 2 and per
    (channel, irrep) of the output (``irreps_out`` if given, else the realized irreps).
    ``none``: 0.
    """
    check_kind(kind)
    if weights not in WEIGHTINGS + ("none",):
        raise ValueError(f"weights={weights!r}: expected one of {WEIGHTINGS + ('none',)}")
    if weights == "none":
        return 0
    irreps_in1 = e3nn.Irreps(irreps_in1).regroup()
    muls = {mul for mul, _ in irreps_in1}
    if len(muls) != 1:
        raise ValueError(
            f"irreps_in1 must have one multiplicity C for every irrep, got {irreps_in1}"
        )
    channels = muls.pop()
    realized = paths(kind, irreps_in1, irreps_in2, irreps_out)
    if weights == "per_path":
        if kind != "cg":
            raise ValueError(
                f"weights='per_path' needs kind='cg': a {kind} product does not "
                "separate its paths; use weights='per_channel'"
            )
        return channels * len(realized)
    outs = irrep_filter(irreps_out) or {p.ir_out for p in realized}
    return (
        channels * len(irreps_in1) + len(e3nn.Irreps(irreps_in2).regroup()) + channels * len(outs)
    )
