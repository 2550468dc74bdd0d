"""`TensorProduct`: one flax.linen module over the four kinds, with learned weights.

All kinds take x1 = C x [irreps] (node features, one multiplicity C) and x2 with multiplicity 1
(edge harmonics, broadcast over channels) or C (Gaunt kinds: channelwise), and return
C x [irreps_out]; irreps the kind cannot realize come back as zero blocks, so kinds swap in place.
`paths` / `num_weights` say what each configuration realizes and learns.
"""

from __future__ import annotations

from typing import Any

import e3nn_jax as e3nn
import flax.linen as nn
import jax.numpy as jnp

from equijax.nn.tp.cg import clebsch_gordan, clebsch_gordan_paths
from equijax.nn.tp.gaunt_fourier import gaunt_fourier
from equijax.nn.tp.gaunt_grid import gaunt_s2grid
from equijax.nn.tp.inputs import assemble, leading_shape
from equijax.nn.tp.paths import WEIGHTINGS, check_kind, irrep_filter, paths
from equijax.nn.tp.vector_gaunt import vector_gaunt

BASELINE_KIND = "e3nn"
"""`TensorProduct` kind that calls e3nn-jax's ``tensor_product`` (a comparator, not in KINDS)."""

FUNCTIONS = {
    "cg": clebsch_gordan,
    "gaunt_grid": gaunt_s2grid,
    "gaunt_fourier": gaunt_fourier,
    "vector_gaunt": vector_gaunt,
}


def tensor_product(kind: str, x1, x2, *, filter_ir_out=None, **options):
    """Unweighted product of ``kind`` ("cg", "gaunt_grid", "gaunt_fourier", "vector_gaunt").

    ``options`` go to the kind's function (``resolution``/``method`` for the grid kinds).
    """
    return FUNCTIONS[check_kind(kind)](x1, x2, filter_ir_out=filter_ir_out, **options)


def _scale_chunks(x: e3nn.IrrepsArray, weights) -> e3nn.IrrepsArray:
    """Multiply chunk i of ``x`` (..., mul, d) by ``weights[i]`` (mul,) or scalar."""
    chunks = [None if c is None else c * w[..., None] for c, w in zip(x.chunks, weights)]
    return e3nn.from_chunks(x.irreps, chunks, x.shape[:-1], x.dtype)


class TensorProduct(nn.Module):
    """Weighted equivariant tensor product of node features and (edge) features.

    Attributes:
        kind: "cg" | "gaunt_grid" | "gaunt_fourier" | "vector_gaunt", or "e3nn": e3nn-jax's own
            ``tensor_product`` (the same function as "cg"; the baseline of `equijax bench model`).
        irreps_out: output irreps (multiplicities ignored; output is C x each irrep, sorted and
            deduplicated as e3nn sorts). Default: every irrep the kind realizes. Irreps the kind
            cannot realize come back as zero blocks.
        weights: "per_path" (kind "cg": a weight per path and channel, initialised N(0, 1) and
            scaled by 1/√(paths into the output irrep)), "per_channel" (a weight per (channel,
            irrep) of x1, per irrep of x2 and per (channel, irrep) of the output, initialised to 1;
            any kind) or "none": the plain product, paths into one irrep summed.
        options: keyword options of the kind's function (e.g. {"method": "operator"}).

    Call: ``(x1 (..., C x irreps1), x2 (..., 1 or C x irreps2)) -> (..., C x irreps_out)``.
    """

    kind: str = "gaunt_grid"
    irreps_out: Any = None
    weights: str = "per_channel"
    options: Any = None

    @nn.compact
    def __call__(self, x1: e3nn.IrrepsArray, x2: e3nn.IrrepsArray) -> e3nn.IrrepsArray:
        kind = "cg" if self.kind == BASELINE_KIND else check_kind(self.kind)
        if self.weights not in WEIGHTINGS + ("none",):
            raise ValueError(f"weights={self.weights!r}: expected per_path, per_channel or none")
        if self.weights == "per_path" and kind != "cg":
            raise ValueError(
                f"weights='per_path' needs kind='cg': a {self.kind} product does not "
                "separate its paths; use weights='per_channel'"
            )
        x1, x2 = x1.regroup(), x2.regroup()
        muls = {mul for mul, _ in x1.irreps}
        if len(muls) != 1:
            raise ValueError(
                f"TensorProduct needs x1 with one multiplicity C for every irrep, got "
                f"{x1.irreps}; map it with e3nn.flax.Linear first"
            )
        channels = muls.pop()
        keep = irrep_filter(self.irreps_out)
        realized = paths(kind, x1.irreps, x2.irreps, self.irreps_out)
        wanted = sorted(keep) if keep is not None else sorted({p.ir_out for p in realized})
        if self.weights == "per_channel":
            w1 = self.param("w_in1", nn.initializers.ones, (len(x1.irreps), channels))
            w2 = self.param("w_in2", nn.initializers.ones, (len(x2.irreps),))
            x1 = _scale_chunks(x1, w1.astype(x1.dtype))
            x2 = _scale_chunks(x2, w2.astype(x2.dtype)[:, None])
        blocks = self._blocks(x1, x2, channels, realized)
        if self.weights == "per_channel":
            w3 = self.param("w_out", nn.initializers.ones, (len(wanted), channels))
            blocks = {
                ir: v * w3[wanted.index(ir)].astype(v.dtype)[:, None] for ir, v in blocks.items()
            }
        lead = leading_shape(x1, x2)
        dtype = jnp.result_type(x1.dtype, x2.dtype)
        for ir in wanted:
            if ir not in blocks:
                blocks[ir] = jnp.zeros(lead + (channels, ir.dim), dtype)
        return assemble({ir: blocks[ir] for ir in wanted}, lead, channels, dtype)

    def _blocks(self, x1, x2, channels, realized) -> dict:
        """{Irrep: (..., C, d)} of the product, paths into one irrep summed (or weighted)."""
        options = dict(self.options or {})
        if not realized:  # nothing reachable: the caller fills zero blocks
            return {}
        if self.kind == BASELINE_KIND and self.weights != "per_path":
            out = e3nn.tensor_product(
                x1, x2, filter_ir_out=sorted({p.ir_out for p in realized}), regroup_output=False
            )
            blocks: dict = {}
            for (_, ir), chunk in zip(out.irreps, out.chunks):
                if chunk is not None:
                    blocks[ir] = chunk if ir not in blocks else blocks[ir] + chunk
            return blocks
        if self.kind not in ("cg", BASELINE_KIND):
            reachable = sorted({p.ir_out for p in realized})
            out = tensor_product(self.kind, x1, x2, filter_ir_out=reachable, **options)
            return {ir: c for (_, ir), c in zip(out.irreps, out.chunks) if c is not None}
        per_path = clebsch_gordan_paths(x1, x2, filter_ir_out=self.irreps_out, **options)
        count: dict = {}
        for path in realized:
            count[path.ir_out] = count.get(path.ir_out, 0) + 1
        if self.weights == "per_path":
            w = self.param("w_path", nn.initializers.normal(1.0), (len(per_path), channels))
        blocks: dict = {}
        for i, (path, chunk) in enumerate(per_path):
            if chunk is None:
                continue
            if self.weights == "per_path":  # e3nn-style: unit-variance weights, 1/√(fan-in)
                scale = 1.0 / jnp.sqrt(count[path.ir_out])
                chunk = chunk * (w[i].astype(chunk.dtype) * scale)[:, None]
            ir = path.ir_out
            blocks[ir] = chunk if ir not in blocks else blocks[ir] + chunk
        return blocks
