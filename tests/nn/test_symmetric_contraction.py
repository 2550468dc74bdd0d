"""The symmetric contraction: the monomial fold against a direct einsum of the full tensor, the
coupling counts against mace-torch's U matrices (their rank after symmetrisation), equivariance
of both kinds, and the sphere-grid contraction against e3nn-jax's own grid transforms at a high
resolution."""

from __future__ import annotations

import e3nn_jax as e3nn
import jax
import numpy as np
import pytest

from equijax.nn.symmetric_contraction import (
    cg_contraction,
    contraction_paths,
    fold_to_monomials,
    gaunt_grid_contraction,
    monomials,
    num_couplings,
    symmetric_basis,
)

IRREPS = "0e+1o+2e"


def test_monomial_fold_equals_the_full_contraction():
    rng = np.random.default_rng(0)
    tensor = rng.normal(size=(5, 5, 5, 3))
    x = rng.normal(size=(7, 5))
    direct = np.einsum("ijkm,ni,nj,nk->nm", tensor, x, x, x)
    folded = np.asarray(monomials(x, 3)) @ fold_to_monomials(tensor, 3)
    np.testing.assert_allclose(folded, direct, rtol=1e-5, atol=1e-5 * np.abs(direct).max())


@pytest.mark.parametrize("nu", [1, 2, 3])
@pytest.mark.parametrize("ir_out", ["0e", "1o", "2e", "1e"])
def test_coupling_count_is_the_rank_of_mace_torch_couplings(nu, ir_out):
    """mace-torch's U matrix (possibly with dependent columns) has, once symmetrised, the rank
    equijax counts, and lies in equijax's span."""
    import torch
    from mace.tools.cg import U_matrix_real

    torch.set_default_dtype(torch.float64)
    try:
        u = U_matrix_real(IRREPS, ir_out, nu, use_cueq_cg=False)[-1].numpy()
    finally:
        torch.set_default_dtype(torch.float32)
    ir = e3nn.Irrep(ir_out)
    u = u[..., None, :] if ir.dim == 1 else np.moveaxis(u, 0, -2)
    folded = fold_to_monomials(u, nu).reshape(-1, u.shape[-1])
    rank = np.linalg.matrix_rank(folded, tol=1e-8) if folded.size else 0
    assert rank == num_couplings(IRREPS, ir_out, nu)
    k = symmetric_basis(IRREPS, ir_out, nu).reshape(folded.shape[0], -1)
    if k.shape[1]:
        a = np.linalg.lstsq(k, folded, rcond=None)[0]
        np.testing.assert_allclose(k @ a, folded, atol=1e-9)


def _rotate(irreps, x, rotation):
    return e3nn.IrrepsArray(irreps, x).transform_by_matrix(rotation).array


@pytest.mark.parametrize("kind", ["cg", "gaunt_grid"])
def test_contraction_is_equivariant(kind):
    rng = np.random.default_rng(1)
    n, c, correlation = 3, 4, 3
    irreps_out = e3nn.Irreps(f"{c}x0e+{c}x1o+{c}x2e")
    x = rng.normal(size=(n, c, 9)).astype(np.float32)
    rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    rotation *= np.linalg.det(rotation)  # proper rotation; parity checked by the irreps

    def run(features):
        if kind == "cg":
            w = {
                (str(ir), nu): rng_w.normal(size=(n, num_couplings(IRREPS, ir, nu), c))
                for _, ir in irreps_out
                for nu in range(1, correlation + 1)
                if num_couplings(IRREPS, ir, nu)
            }
            return cg_contraction(features, w, IRREPS, irreps_out, correlation).array
        inputs = {nu: rng_w.normal(size=(nu, 3, c)) for nu in range(1, correlation + 1)}
        outputs = {
            (str(ir), nu): rng_w.normal(size=(n, c))
            for _, ir in irreps_out
            for nu in range(1, correlation + 1)
        }
        return gaunt_grid_contraction(
            features, inputs, outputs, IRREPS, irreps_out, correlation
        ).array

    rng_w = np.random.default_rng(2)
    out = np.asarray(run(x))
    rng_w = np.random.default_rng(2)
    x_rot = np.stack([_rotate(IRREPS, x[:, k], rotation) for k in range(c)], axis=1)
    out_rot = np.asarray(run(x_rot))
    np.testing.assert_allclose(
        _rotate(irreps_out, out, rotation), out_rot, atol=1e-4 * np.abs(out).max()
    )
    assert np.abs(out).max() > 1e-3


def test_gaunt_grid_contraction_equals_a_fine_e3nn_grid():
    """Degree 2 and 3 products of one channel, projected onto 0e..2e, against e3nn-jax's
    to_s2grid / from_s2grid at a much finer resolution (unit input and output weights)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 1, 9))
    irreps_out = e3nn.Irreps("1x0e+1x1o+1x2e")
    for nu in (2, 3):
        inputs = {k: np.ones((k, 3, 1)) for k in range(1, nu + 1)}
        outputs = {(str(ir), k): np.full((2, 1), float(k == nu)) for _, ir in irreps_out
                   for k in range(1, nu + 1)}  # fmt: skip
        got = np.asarray(gaunt_grid_contraction(x, inputs, outputs, IRREPS, irreps_out, nu).array)
        with jax.enable_x64(True):
            f = e3nn.IrrepsArray(IRREPS, x[:, 0])
            grid = e3nn.to_s2grid(f, 40, 79, quadrature="gausslegendre", normalization="integral")
            power = grid.apply(lambda v, nu=nu: v**nu)
            want = e3nn.from_s2grid(power, irreps_out, normalization="integral").array
        np.testing.assert_allclose(got, np.asarray(want), atol=1e-6 * np.abs(want).max())


def test_gaunt_realizes_at_most_one_coupling_per_degree_and_irrep():
    cg = contraction_paths("cg", IRREPS, "4x0e+4x1o+4x1e", 3)
    gaunt = contraction_paths("gaunt_grid", IRREPS, "4x0e+4x1o+4x1e", 3)
    for a, b in zip(cg, gaunt):
        assert a["couplings"] == b["couplings"]
        assert a["realized"] == a["couplings"]
        # 1e is not a function's harmonic: no sphere-grid product reaches it
        wanted = 0 if b["ir_out"] == "1e" else min(1, a["couplings"])
        assert b["realized"] == wanted


@pytest.mark.parametrize("nu", [1, 2, 3])
def test_custom_backward_matches_finite_differences_to_second_order(nu):
    """The hand-written backward of the polynomials (and its own derivative, which force
    training takes) against finite differences, float64."""
    from jax.test_util import check_grads

    from equijax.nn.symmetric_contraction import symmetric_polynomials

    key = (str(e3nn.Irreps(IRREPS)), ("0e", "1o", "2e"), nu)
    with jax.enable_x64(True):
        x = jax.numpy.asarray(np.random.default_rng(4).normal(size=(3, 9)))
        check_grads(lambda v: symmetric_polynomials(v, key), (x,), order=2, modes=["rev"])
