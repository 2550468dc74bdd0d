"""The tensor products compared by `equijax bench tp`, all on one workload, as array functions.

Workload (as in ``shared/anchors.md``): x1 = C x [0e + 1o + ... + L] (node features), x2 = 1 x
[0e + 1o + ... + L] (edge harmonics), outputs every irrep with l ≤ L (both parities). Each method is
``f(x1 (N, C·(L+1)²), x2 (N, (L+1)²)) -> (N, out_dim)`` plus the paths it realizes, so like is
compared with like: Gaunt products realize fewer paths than Clebsch-Gordan.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np

from equijax.nn import tp

EQUIJAX_METHODS = (
    "cg",
    "gaunt_grid",
    "gaunt_grid:grid",
    "gaunt_grid:operator",
    "gaunt_grid:dense",
    "gaunt_fourier",
    "vector_gaunt",
)
REFERENCE_METHODS = ("e3nn_cg", "e3nn_s2grid", "cue")


class Method(NamedTuple):
    """One benchmarked product: its array function, paths realized and extra array inputs."""

    name: str
    fn: Callable
    paths: list
    extra_inputs: tuple = ()  # e.g. cuequivariance's weight vector, passed first


def irreps_upto(lmax: int, mul: int = 1) -> e3nn.Irreps:
    """mul x [0e + 1o + 2e + ... + lmax] (natural parity)."""
    return e3nn.Irreps([(mul, (l, (-1) ** l)) for l in range(lmax + 1)])


def output_filter(lmax: int) -> list:
    """Every irrep with l ≤ lmax, both parities."""
    return [e3nn.Irrep(l, p) for l in range(lmax + 1) for p in (1, -1)]


def _equijax(name: str, lmax: int, channels: int) -> Method:
    ir1, ir2 = irreps_upto(lmax, channels), irreps_upto(lmax)
    kind, _, method = name.partition(":")
    options = {"method": method} if method else {}
    keep = output_filter(lmax)

    def fn(x1, x2):
        out = tp.tensor_product(
            kind,
            e3nn.IrrepsArray(ir1, x1),
            e3nn.IrrepsArray(ir2, x2),
            filter_ir_out=keep,
            **options,
        )
        return out.array

    return Method(name, fn, tp.paths(kind, ir1, ir2, keep))


def _e3nn_cg(lmax: int, channels: int) -> Method:
    ir1, ir2 = irreps_upto(lmax, channels), irreps_upto(lmax)
    keep = output_filter(lmax)

    def fn(x1, x2):
        return e3nn.tensor_product(
            e3nn.IrrepsArray(ir1, x1), e3nn.IrrepsArray(ir2, x2), filter_ir_out=keep
        ).array

    return Method("e3nn_cg", fn, tp.paths("cg", ir1, ir2, keep))


def _e3nn_s2grid(lmax: int, channels: int) -> Method:
    """e3nn-jax's grid product exactly as the anchor measured it (res 2(L+1) x (4L+1), no FFT)."""
    ir1, ir2 = irreps_upto(lmax, channels), irreps_upto(lmax)
    res_beta, res_alpha = 2 * (lmax + 1), 4 * lmax + 1

    def fn(x1, x2):
        xs = e3nn.IrrepsArray(ir1, x1).mul_to_axis(channels)
        ys = e3nn.IrrepsArray(ir2, x2)[:, None]
        kw = {"quadrature": "gausslegendre", "fft": False, "p_val": 1, "p_arg": -1}
        sx = e3nn.to_s2grid(xs, res_beta, res_alpha, **kw)
        sy = e3nn.to_s2grid(ys, res_beta, res_alpha, **kw)
        out = e3nn.from_s2grid(sx * sy, irreps_upto(lmax), fft=False)
        return out.axis_to_mul().array

    return Method("e3nn_s2grid", fn, tp.paths("gaunt_grid", ir1, ir2, output_filter(lmax)))


def _cue(lmax: int, channels: int, batch: int) -> Method:
    """cuequivariance-jax's channelwise product (weighted per path and channel, like cue's MACE)."""
    # optional extra (cue): imported only when the cue method is built
    import cuequivariance as cue
    import cuequivariance_jax as cuex

    def cue_irreps(spec):
        return cue.Irreps("O3", "+".join(spec))

    natural = [f"{l}{'e' if l % 2 == 0 else 'o'}" for l in range(lmax + 1)]
    descriptor = cue.descriptors.channelwise_tensor_product(
        channels * cue_irreps(natural),
        cue_irreps(natural),
        cue_irreps([f"{l}{p}" for l in range(lmax + 1) for p in "eo"]),
    )
    poly = descriptor.squeeze_modes().flatten_coefficient_modes().polynomial
    method = "uniform_1d" if jax.default_backend() == "gpu" else "naive"
    out_shape = jax.ShapeDtypeStruct((batch, poly.outputs[0].size), jnp.float32)

    def fn(w, x1, x2):
        [out] = cuex.segmented_polynomial(poly, [w, x1, x2], [out_shape], method=method)
        return out

    weights = jnp.ones((poly.inputs[0].size,), jnp.float32)
    ir1, ir2 = irreps_upto(lmax, channels), irreps_upto(lmax)
    return Method(f"cue_{method}", fn, tp.paths("cg", ir1, ir2, output_filter(lmax)), (weights,))


def build(name: str, lmax: int, channels: int, batch: int) -> Method:
    """The `Method` called ``name`` (EQUIJAX_METHODS or REFERENCE_METHODS) at this size."""
    if name in EQUIJAX_METHODS:
        return _equijax(name, lmax, channels)
    if name == "e3nn_cg":
        return _e3nn_cg(lmax, channels)
    if name == "e3nn_s2grid":
        return _e3nn_s2grid(lmax, channels)
    if name == "cue":
        return _cue(lmax, channels, batch)
    raise ValueError(
        f"unknown method {name!r}; expected one of {', '.join(EQUIJAX_METHODS + REFERENCE_METHODS)}"
    )


def cue_available() -> bool:
    """Whether cuequivariance-jax imports here (optional comparator)."""
    try:  # optional extra (cue): probed here, so that a missing one is no import error
        import cuequivariance  # noqa: F401
        import cuequivariance_jax  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return False
    return True


def useful_flops(paths: list, batch: int, channels: int) -> int:
    """2 x multiply-adds of the sparse coupling tensors of the realized paths, forward pass."""
    nnz = 0
    for p in paths:
        c = np.asarray(e3nn.clebsch_gordan(p.ir1.l, p.ir2.l, p.ir_out.l))
        nnz += int(np.count_nonzero(np.abs(c) > 1e-12))
    return 2 * nnz * batch * channels


def minimal_bytes(lmax: int, batch: int, channels: int, out_dim: int, itemsize: int = 4) -> int:
    """Bytes a forward pass must move at least: read x1 and x2, write the output once."""
    d = (lmax + 1) ** 2
    return itemsize * batch * (channels * d + d + out_dim)
