"""`gaunt_s2grid` / `gaunt_fourier` against e3nn-jax's product on a fine grid (to_s2grid · to_s2grid -> from_s2grid)."""

from __future__ import annotations

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tp_helpers import blocks, irreps_array, parity_class, rel_err, triangle_paths

from equijax.nn import tp

C = 2
RES_REF = (40, 81)  # far above exact for l ≤ 4 outputs
L_REF = 4  # every reference signal is padded to lmax 4: e3nn builds its Legendre tables once

# name: (irreps1 of one channel, irreps2 of one channel, mul2, lead1, lead2)
CASES = {
    "other_class": ("0o + 1e + 2o", "0e + 1o + 2e", 1, (3,), (3,)),
    "mixed": ("0e + 0o + 1o + 1e + 2e + 2o", "0e + 1o + 1e + 2o", 1, (2,), (2,)),
    "channelwise_broadcast": ("0e + 1o + 1e + 2e", "0e + 1o + 2e", C, (2, 1), (3,)),
    # lmax 2 x 3: beyond the reference's L_REF; checked between methods only (FFT under "auto")
    "x2_lmax3": ("0e + 1o + 2e", "1o + 3o", 1, (2,), (2,)),
}
REFERENCE_CASES = ["other_class", "mixed", "channelwise_broadcast"]
# "auto" resolves to one of the explicit methods; Fourier "direct" compiles one shifted add per
# Fourier coefficient of x2, so it runs on the smaller cases only
METHODS = {
    "other_class": [("gaunt_s2grid", m) for m in ("auto", "grid", "operator")]
    + [("gaunt_fourier", m) for m in ("fft", "direct")],
    "mixed": [("gaunt_s2grid", "grid"), ("gaunt_s2grid", "operator"), ("gaunt_fourier", "fft")],
    "channelwise_broadcast": [("gaunt_s2grid", "auto"), ("gaunt_fourier", "direct")],
    "x2_lmax3": [("gaunt_s2grid", "grid"), ("gaunt_fourier", "auto")],  # auto: FFT (x2 lmax 3)
}


def _inputs(rng, case):
    irreps1, irreps2, mul2, lead1, lead2 = CASES[case]
    x1 = irreps_array(rng, e3nn.Irreps(irreps1) * C, lead1).regroup()
    x2 = irreps_array(rng, e3nn.Irreps(irreps2) * mul2, lead2).regroup()
    return x1, x2


def _class_signal(x: e3nn.IrrepsArray, a: int):
    """The parity-class-``a`` part of x (mul C or 1) as (..., mul, s2_irreps(L_REF, p_val=a)), or None."""
    x = x.regroup()
    chunks = dict(zip([ir for _, ir in x.irreps], x.chunks))
    present = [ir for ir in chunks if parity_class(ir) == a]
    if not present:
        return None
    mul = x.irreps[0].mul
    irreps = e3nn.s2_irreps(L_REF, p_val=a)
    padded = e3nn.from_chunks(
        irreps * mul, [chunks.get(ir) for _, ir in irreps], x.shape[:-1], x.dtype
    )
    return padded.mul_to_axis(mul)


def e3nn_product(x1, x2):
    """{Irrep: (..., C, 2l+1)} of e3nn's grid product, summed over the parity-class pairs."""
    lead = jnp.broadcast_shapes(x1.shape[:-1], x2.shape[:-1])
    out = {}
    for a in (1, -1):
        for b in (1, -1):
            s1, s2 = _class_signal(x1, a), _class_signal(x2, b)
            if s1 is None or s2 is None:
                continue
            g1 = e3nn.to_s2grid(
                s1, *RES_REF, quadrature="gausslegendre", fft=False, p_val=a, p_arg=-1
            )
            g2 = e3nn.to_s2grid(
                s2, *RES_REF, quadrature="gausslegendre", fft=False, p_val=b, p_arg=-1
            )
            y = e3nn.from_s2grid(
                g1 * g2, e3nn.s2_irreps(L_REF, p_val=a * b), fft=False
            ).axis_to_mul()
            for (mul, ir), chunk in zip(y.irreps, y.chunks):
                chunk = jnp.broadcast_to(chunk, lead + (mul, ir.dim))
                out[ir] = chunk if ir not in out else out[ir] + chunk
    return out


def _compare_blocks(name, out, want, failures):
    """Our output against e3nn's {Irrep: block}: irreps e3nn finds zero may be absent from ours."""
    if out.irreps != out.irreps.regroup() or any(mul != C for mul, _ in out.irreps):
        failures.append(f"{name}: output irreps {out.irreps}")
    ours = blocks(out)
    scale = max(np.abs(np.asarray(v)).max() for v in want.values())
    for ir, ref in want.items():
        ref = np.asarray(ref, np.float64)
        value = ours.get(ir, np.zeros_like(ref))
        err = np.abs(value - ref).max() / scale
        if err > 1e-5:
            failures.append(
                f"{name} {ir}: relative error {err:.2g}"
                + ("" if ir in ours else " (an irrep our product does not return)")
            )
    if not set(ours) <= set(want):
        failures.append(f"{name}: extra irreps {set(ours) - set(want)}")


def test_matches_e3nn_grid_product_and_methods_agree():
    """Every case: gaunt_s2grid against e3nn's fine-grid product (both parity classes, mixed,
    channelwise), and every method of both functions against each other. One jit per side and one
    test, so pytest-xdist never builds e3nn's grid tables (~6 s) in two workers."""
    rng = np.random.default_rng(0)
    inputs = {case: _inputs(rng, case) for case in CASES}
    want = jax.jit(lambda inputs: {k: e3nn_product(*inputs[k]) for k in REFERENCE_CASES})(inputs)
    got = jax.jit(
        lambda inputs: {
            case: {(fn, m): getattr(tp, fn)(x1, x2, method=m) for fn, m in METHODS[case]}
            for case, (x1, x2) in inputs.items()
        }
    )(inputs)
    failures = []
    for case in CASES:
        base = got[case][METHODS[case][0]]
        if case in REFERENCE_CASES:
            _compare_blocks(case, base, want[case], failures)
        for key, out in got[case].items():
            if out.irreps != base.irreps:
                failures.append(f"{case} {key}: irreps {out.irreps} != {base.irreps}")
            elif rel_err(out, base) > 2e-6:
                failures.append(f"{case} {key}: relative difference {rel_err(out, base):.2g}")
    assert not failures, "\n".join(failures)


# --- the exact resolution chooser (float64) ---------------------------------------------------

# name: (kind, irreps1 of one channel, irreps2, filter)
RESOLUTION_CASES = {
    "gaunt_full": ("gaunt_grid", "0e + 1o + 2e", "0e + 1o", None),
    "gaunt_mixed_classes": ("gaunt_grid", "0e + 1o + 1e + 2o", "0e + 1o + 2e", None),
    "vector_odd_only": ("vector_gaunt", "1o + 2e", "1o + 2e", "1e + 2o"),  # cross-product-like only
}


def expected_degree(kind, irreps1, irreps2, filt) -> int:
    """The documented chooser (s2grid module docstring), from an independent path enumeration:
    per parity-class pair (a, b) that reaches an output, La + Lb + (largest even-path l3) and
    La + Lb - 1 + (largest odd-path l3), La and Lb the largest input l of each class."""
    irs1 = [ir for _, ir in e3nn.Irreps(irreps1)]
    irs2 = [ir for _, ir in e3nn.Irreps(irreps2)]
    keep = None if filt is None else {ir for _, ir in e3nn.Irreps(filt)}
    top1, top2 = {}, {}
    for top, irs in ((top1, irs1), (top2, irs2)):
        for ir in irs:
            top[parity_class(ir)] = max(top.get(parity_class(ir), 0), ir.l)
    degree = 0
    for ir1 in irs1:
        for ir2 in irs2:
            for ir3 in triangle_paths(ir1, ir2, odd_allowed=kind == "vector_gaunt"):
                if keep is None or ir3 in keep:
                    odd = (ir1.l + ir2.l + ir3.l) % 2
                    degree = max(
                        degree, top1[parity_class(ir1)] + top2[parity_class(ir2)] + ir3.l - odd
                    )
    return degree


def test_grid_resolution_is_the_smallest_exact():
    """Float64: at grid_resolution the result equals finer grids to rounding; one step lower in
    res_beta or in res_alpha changes it (generic inputs)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        inputs, resolutions = {}, {}
        for name, (kind, irreps1, irreps2, filt) in RESOLUTION_CASES.items():
            x1 = irreps_array(rng, e3nn.Irreps(irreps1) * C, (2,)).regroup()
            x2 = irreps_array(rng, irreps2, (2,))
            rb, ra = tp.grid_resolution(kind, x1.irreps, x2.irreps, filt)
            degree = expected_degree(kind, irreps1, irreps2, filt)
            if filt is None:  # full output lmax = l1max + l2max: degree 2 (l1max + l2max)
                assert degree == 2 * (e3nn.Irreps(irreps1).lmax + e3nn.Irreps(irreps2).lmax)
            assert (rb, ra) == (degree // 2 + 1, degree + 1), name
            inputs[name] = (x1, x2)
            resolutions[name] = {
                "exact": (rb, ra),
                "+1,+2": (rb + 1, ra + 2),
                "+3,+5": (rb + 3, ra + 5),
                "beta-1": (rb - 1, ra),
                "alpha-1": (rb, ra - 1),
            }

        def run(inputs):
            out = {}
            for name, (x1, x2) in inputs.items():
                kind, _, _, filt = RESOLUTION_CASES[name]
                out[name] = {
                    k: tp.tensor_product(kind, x1, x2, filter_ir_out=filt, resolution=res).array
                    for k, res in resolutions[name].items()
                }
            return out

        results = jax.jit(run)(inputs)
    failures = []
    for name, out in results.items():
        assert out["exact"].dtype == jnp.float64
        for finer in ("+1,+2", "+3,+5"):  # float64: exact up to rounding (spec: < 1e-6)
            if rel_err(out["exact"], out[finer]) > 1e-12:
                failures.append(f"{name} {finer}: {rel_err(out['exact'], out[finer]):.2g}")
        for coarser in ("beta-1", "alpha-1"):
            if rel_err(out[coarser], out["exact"]) < 1e-4:
                failures.append(
                    f"{name} {coarser}: unchanged ({rel_err(out[coarser], out['exact']):.2g})"
                )
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("degree", [0, 1, 2, 5, 8, 13])
def test_resolution_for_degree(degree):
    assert tp.resolution_for_degree(degree) == (degree // 2 + 1, degree + 1)


def test_resolution_for_negative_degree_is_value_error():
    with pytest.raises(ValueError, match="degree"):
        tp.resolution_for_degree(-1)


@pytest.mark.parametrize("l1,l2", [(1, 1), (2, 1), (3, 3), (6, 2)])
def test_grid_resolution_full_output(l1, l2):
    """Full output lmax l1 + l2: degree 2 (l1 + l2) for every Gaunt kind; filters lower it."""
    irreps1, irreps2 = e3nn.s2_irreps(l1), e3nn.s2_irreps(l2)
    for kind in ("gaunt_grid", "gaunt_fourier", "vector_gaunt"):
        assert tp.grid_resolution(kind, irreps1, irreps2) == (l1 + l2 + 1, 2 * (l1 + l2) + 1), kind
        for filt in ("0e + 1o", "2e", "1e + 3e"):
            d = expected_degree(kind, irreps1, irreps2, filt)
            if d:
                assert tp.grid_resolution(kind, irreps1, irreps2, filt) == (d // 2 + 1, d + 1), (
                    kind,
                    filt,
                )


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [tp.gaunt_s2grid, tp.gaunt_fourier, tp.vector_gaunt])
def test_input_errors(fn):
    rng = np.random.default_rng(0)
    x2 = irreps_array(rng, "0e + 1o", (2,))
    with pytest.raises(ValueError, match="different multiplicities"):
        fn(irreps_array(rng, "2x0e + 3x1o", (2,)), x2)
    with pytest.raises(ValueError, match="multiplicity 1 or the multiplicity"):
        fn(irreps_array(rng, "3x0e + 3x1o", (2,)), irreps_array(rng, "2x0e + 2x1o", (2,)))
    with pytest.raises(TypeError, match="x1"):
        fn(np.zeros((2, 4)), x2)
    with pytest.raises(ValueError, match="do not broadcast"):
        fn(irreps_array(rng, "2x0e + 2x1o", (3,)), x2)
    with pytest.raises(ValueError, match="filter_ir_out"):
        fn(irreps_array(rng, "2x0e + 2x1o", (2,)), x2, filter_ir_out="4e")


@pytest.mark.parametrize("resolution", [(0, 5), (3,), (3, 5, 7), (2.5, 5), (3, -1)])
def test_bad_resolution_is_value_error(resolution):
    rng = np.random.default_rng(0)
    x1, x2 = irreps_array(rng, "2x0e + 2x1o", (2,)), irreps_array(rng, "0e + 1o", (2,))
    for fn in (tp.gaunt_s2grid, tp.vector_gaunt):
        with pytest.raises(ValueError, match="resolution"):
            fn(x1, x2, resolution=resolution)


def test_method_errors():
    rng = np.random.default_rng(0)
    x1 = irreps_array(rng, "2x0e + 2x1o", (2,))
    with pytest.raises(ValueError, match="operator"):
        tp.gaunt_s2grid(x1, irreps_array(rng, "2x0e + 2x1o", (2,)), method="operator")
    x2 = irreps_array(rng, "0e + 1o", (2,))
    with pytest.raises(ValueError, match="method"):
        tp.gaunt_s2grid(x1, x2, method="fft")
    with pytest.raises(ValueError, match="method"):
        tp.gaunt_fourier(x1, x2, method="grid")
