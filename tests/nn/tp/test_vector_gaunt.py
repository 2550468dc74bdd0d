"""`vector_gaunt` against the cross product, `gaunt_s2grid`, and r̂·(∇f1×∇f2) integrated on a fine grid with e3nn's harmonics."""

from __future__ import annotations

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tp_helpers import blocks, irreps_array, parity_class, triangle_paths

from equijax.nn import tp

C = 2


def test_cross_product_exact_constant():
    """1o ⊗ 1o -> 1e is (√3/2) a × b, per channel, for x2 broadcast or channelwise."""
    rng = np.random.default_rng(0)
    a, b = irreps_array(rng, "1o", (5,)), irreps_array(rng, "1o", (5,))
    out = tp.vector_gaunt(a, b)
    assert out.irreps == e3nn.Irreps("0e + 1e + 2e")
    want = (
        np.sqrt(3) / 2 * np.cross(np.asarray(a.array, np.float64), np.asarray(b.array, np.float64))
    )
    np.testing.assert_allclose(blocks(out)[e3nn.Irrep("1e")][:, 0], want, rtol=1e-6, atol=1e-6)

    a3 = irreps_array(rng, "3x1o", (4,))
    b3 = irreps_array(rng, "3x1o", (4,))
    vec = lambda x: np.asarray(x.array, np.float64).reshape(x.shape[:-1] + (3, 3))
    per_channel = blocks(tp.vector_gaunt(a3, b3, filter_ir_out="1e"))[e3nn.Irrep("1e")]
    np.testing.assert_allclose(
        per_channel, np.sqrt(3) / 2 * np.cross(vec(a3), vec(b3)), rtol=1e-6, atol=1e-6
    )
    b4 = irreps_array(rng, "1o", (4,))
    broadcast = blocks(tp.vector_gaunt(a3, b4, filter_ir_out="1e"))[e3nn.Irrep("1e")]
    b64 = np.asarray(b4.array, np.float64)[:, None, :]
    np.testing.assert_allclose(
        broadcast, np.sqrt(3) / 2 * np.cross(vec(a3), b64), rtol=1e-6, atol=1e-6
    )


# ---- an independent reference for every path: e3nn harmonics and their autodiff gradients -----

RES = (8, 17)  # Gauss-Legendre x uniform, exact for degree ≤ 15 (inputs here have lmax 2)


def _grid():
    y, w = np.polynomial.legendre.leggauss(RES[0])
    beta, alpha = np.arccos(y), 2 * np.pi * np.arange(RES[1]) / RES[1]
    bb, aa = np.meshgrid(beta, alpha, indexing="ij")
    r = np.stack([np.sin(bb) * np.sin(aa), np.cos(bb), np.sin(bb) * np.cos(aa)], -1).reshape(-1, 3)
    weight = np.repeat(w * 2 * np.pi / RES[1], RES[1])
    return r, weight


def reference(x1: e3nn.IrrepsArray, x2: e3nn.IrrepsArray, lmax_in: int) -> dict:
    """{Irrep: (..., C, 2l+1)}: per pair of parity classes (a, b), with f = Σ x_lm Y_lm and
    g = Σ x_lm ∇Y_lm / √(l(l+1)) (∇ of Y(r/|r|) is the surface gradient):
    √(4π) ∫ f1 f2 Y_l dΩ into class a·b and √(4π) ∫ r̂·(g1 × g2) Y_l dΩ into class -a·b."""
    lmax_out = 2 * lmax_in
    irreps = e3nn.s2_irreps(lmax_out)
    r, weight = _grid()
    sh = lambda v: (
        e3nn.spherical_harmonics(irreps, v, normalize=True, normalization="integral").array
    )
    values = np.asarray(sh(jnp.asarray(r)), np.float64)  # (P, (lmax_out+1)^2)
    grads = np.asarray(jax.jit(jax.vmap(jax.jacfwd(sh)))(jnp.asarray(r)), np.float64)  # (P, dim, 3)
    n_in = (lmax_in + 1) ** 2
    ls = np.concatenate([[l] * (2 * l + 1) for l in range(lmax_in + 1)])
    inv = np.where(ls > 0, 1 / np.sqrt(np.maximum(ls * (ls + 1), 1)), 0.0)

    def by_class(x):
        """{class: coefficients (..., mul, (lmax_in+1)^2)} in the s2_irreps layout."""
        out = {}
        for ir, chunk in blocks(x).items():
            a = parity_class(ir)
            full = out.setdefault(a, np.zeros(chunk.shape[:-1] + (n_in,)))
            full[..., ir.l**2 : (ir.l + 1) ** 2] = chunk
        return out

    result = {}
    for a, c1 in by_class(x1).items():
        for b, c2 in by_class(x2).items():
            f1, f2 = c1 @ values[:, :n_in].T, c2 @ values[:, :n_in].T  # (..., mul, P)
            g1 = np.einsum("...k,pkx->...px", c1 * inv, grads[:, :n_in])
            g2 = np.einsum("...k,pkx->...px", c2 * inv, grads[:, :n_in])
            odd = np.einsum("px,...px->...p", r, np.cross(g1, g2))
            for cls, h in ((a * b, f1 * f2), (-a * b, odd)):
                proj = np.sqrt(4 * np.pi) * np.einsum("...p,p,pk->...k", h, weight, values)
                for l in range(lmax_out + 1):
                    ir = e3nn.Irrep(l, cls * (-1) ** l)
                    v = proj[..., l * l : (l + 1) ** 2]
                    result[ir] = v if ir not in result else result[ir] + v
    return result


def test_every_path_and_the_even_part():
    """Mixed-parity inputs, x2 broadcast and channelwise (one jit, one test so pytest-xdist does not
    compile it twice): every output block equals the surface-gradient reference, and
    vector - gaunt is zero on every irrep no odd (l1 + l2 + l3 odd) path reaches."""
    rng = np.random.default_rng(1)
    x1 = irreps_array(rng, e3nn.Irreps("0e + 1o + 1e + 2e + 2o") * C, (3,)).regroup()
    x2 = irreps_array(rng, "0e + 1o + 2o + 2e", (3,))
    x2c = irreps_array(rng, e3nn.Irreps("1o + 1e + 2e") * C, (3,)).regroup()
    outs = jax.jit(
        lambda x1, x2, x2c: [(tp.vector_gaunt(x1, x), tp.gaunt_s2grid(x1, x)) for x in (x2, x2c)]
    )(x1, x2, x2c)
    for other, (vec, gaunt) in zip((x2, x2c), outs):
        context = f"x2 = {other.irreps}"
        # every path against the independent reference
        want, got = reference(x1, other, 2), blocks(vec)
        scale = max(np.abs(v).max() for v in want.values())
        for ir, ref in want.items():
            value = got.get(ir)
            if value is None:  # nothing realizes ir: the exact integrals vanish
                assert np.abs(ref).max() < 1e-5 * scale, (context, ir)
            else:
                np.testing.assert_allclose(
                    value,
                    np.broadcast_to(ref, value.shape),
                    rtol=0,
                    atol=1e-5 * scale,
                    err_msg=f"{context} {ir}",
                )
        assert set(got) <= set(want), context
        # the even part is the Gaunt product
        odd_targets = {
            ir3
            for _, ir1 in x1.irreps
            for _, ir2 in other.irreps
            for ir3 in triangle_paths(ir1, ir2)
            if (ir1.l + ir2.l + ir3.l) % 2
        }
        g = blocks(gaunt)
        assert set(g) <= set(got), context
        checked = 0
        for ir, value in got.items():
            if ir not in odd_targets:
                np.testing.assert_allclose(
                    value, g[ir], rtol=1e-6, atol=1e-6, err_msg=f"{context} {ir}"
                )
                checked += 1
        assert checked >= 3, context
        # and the odd part is really there
        assert any(np.abs(got[ir] - g.get(ir, 0)).max() > 1e-2 for ir in odd_targets if ir in got)


@pytest.mark.parametrize(
    "irreps1,irreps2",
    [("0e + 1o + 2e", "1o + 2e"), ("0o + 1e + 1o + 2o + 3e", "0e + 1e + 2o + 3o")],
)
def test_paths_are_every_cg_coupling(irreps1, irreps2):
    assert tp.paths("vector_gaunt", irreps1, irreps2) == tp.paths("cg", irreps1, irreps2)
    gaunt = tp.paths("gaunt_grid", irreps1, irreps2)
    assert gaunt == [p for p in tp.paths("cg", irreps1, irreps2) if not p.odd]
    assert tp.paths("gaunt_fourier", irreps1, irreps2) == gaunt
