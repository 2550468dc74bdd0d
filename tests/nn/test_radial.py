"""Radial Bessel basis, polynomial envelope, Fourier angle basis and `angle_between` against the
PyTorch CHGNet modules (same frequencies), analytic derivatives and high-resolution quadrature."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from chgnet.model.basis import CutoffPolynomial, Fourier
from chgnet.model.basis import RadialBessel as TorchRadialBessel
from chgnet.model.encoders import AngleEncoder

from equijax.nn.radial import (
    FourierAngle,
    RadialBessel,
    angle_between,
    bessel_basis,
    fourier_basis,
    polynomial_cutoff,
)

RTOL, ATOL = 1e-6, 1e-6  # float32
EPS32 = float(np.finfo(np.float32).eps)


def _t(x) -> torch.Tensor:
    return torch.tensor(np.array(x, dtype=np.float32))


def _random_frequencies(rng, n: int, base: np.ndarray) -> np.ndarray:
    """Canonical frequencies perturbed by a few percent (as after training), float32."""
    return (base * (1 + 0.05 * rng.standard_normal(n))).astype(np.float32)


def _envelope_atol(p) -> float:
    """Float32 rounding bound of ``1 + a x^p + b x^(p+1) + c x^(p+2)`` for x <= 1: the terms reach
    |a| + |b| + |c| and cancel, so any float32 evaluation (torch's or jax's) is only this accurate."""
    return 4 * EPS32 * (1 + (p + 1) * (p + 2) / 2 + p * (p + 2) + p * (p + 1) / 2)


def _envelope64(x, p):
    """The envelope and its first two derivatives in x = r / cutoff, float64, for x < 1."""
    a, b, c = -(p + 1) * (p + 2) / 2, p * (p + 2), -p * (p + 1) / 2
    f = 1 + a * x**p + b * x ** (p + 1) + c * x ** (p + 2)
    d1 = a * p * x ** (p - 1) + b * (p + 1) * x**p + c * (p + 2) * x ** (p + 1)
    d2 = (
        a * p * (p - 1) * x ** (p - 2)
        + b * (p + 1) * p * x ** (p - 1)
        + c * (p + 2) * (p + 1) * x**p
    )
    return f, d1, d2


@pytest.mark.parametrize("cutoff,p", [(6.0, 8), (5.0, 5), (3.0, 8), (4.0, 0)])
def test_polynomial_cutoff_matches_torch(cutoff, p):
    """`polynomial_cutoff` equals chgnet's `CutoffPolynomial` on random r, also beyond the cutoff."""
    rng = np.random.default_rng(0)
    r = rng.uniform(0.05, 1.3 * cutoff, 257).astype(np.float32)
    want = CutoffPolynomial(cutoff=cutoff, cutoff_coeff=p)(_t(r)).numpy()
    got = np.asarray(polynomial_cutoff(jnp.asarray(r), cutoff, p))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=_envelope_atol(p))
    # and both against the float64 formula
    x = r.astype(np.float64) / cutoff
    exact = np.where(x < 1, _envelope64(x, p)[0], 0.0) if p else np.ones_like(x)
    np.testing.assert_allclose(got, exact, rtol=RTOL, atol=_envelope_atol(p))
    if p:
        np.testing.assert_array_equal(got[x >= 1], 0.0)


@pytest.mark.parametrize("num_radial,cutoff,p", [(31, 6.0, 8), (9, 5.0, 5), (31, 3.0, 8)])
def test_radial_bessel_matches_torch(num_radial, cutoff, p):
    """`RadialBessel` (learned frequencies copied in) equals chgnet's `RadialBessel` on random r."""
    rng = np.random.default_rng(1)
    r = rng.uniform(0.5, 1.2 * cutoff, 301).astype(np.float32)
    torch_rbf = TorchRadialBessel(
        num_radial=num_radial, cutoff=cutoff, learnable=True, smooth_cutoff=p
    )
    freqs = _random_frequencies(rng, num_radial, torch_rbf.frequencies.detach().numpy())
    with torch.no_grad():
        torch_rbf.frequencies.copy_(_t(freqs))
        want = torch_rbf(_t(r)).numpy()
    module = RadialBessel(num_radial=num_radial, cutoff=cutoff, cutoff_coeff=p)
    init = module.init(jax.random.PRNGKey(0), jnp.asarray(r))
    # canonical initial frequencies as in chgnet
    np.testing.assert_allclose(
        init["params"]["frequencies"], np.pi * np.arange(1, num_radial + 1), rtol=1e-7
    )
    got = np.asarray(module.apply({"params": {"frequencies": jnp.asarray(freqs)}}, jnp.asarray(r)))
    assert got.shape == want.shape == (301, num_radial)
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=_envelope_atol(p) * scale)


def test_bessel_basis_without_envelope_matches_torch():
    """`bessel_basis` equals chgnet's `RadialBessel(smooth_cutoff=None)` with the same frequencies."""
    rng = np.random.default_rng(2)
    r = rng.uniform(0.3, 6.0, 200).astype(np.float32)
    torch_rbf = TorchRadialBessel(num_radial=12, cutoff=6.0, learnable=True, smooth_cutoff=None)
    freqs = _random_frequencies(rng, 12, torch_rbf.frequencies.detach().numpy())
    with torch.no_grad():
        torch_rbf.frequencies.copy_(_t(freqs))
        want = torch_rbf(_t(r)).numpy()
    got = np.asarray(bessel_basis(jnp.asarray(r), jnp.asarray(freqs), 6.0))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL * np.abs(want).max())


def test_bessel_basis_is_orthonormal_by_quadrature():
    """With canonical frequencies, ``∫_0^c r² φ_n φ_m dr = δ_nm`` (float64 trapezoid, 200k points)."""
    cutoff, n = 5.0, 8
    r = np.linspace(1e-6, cutoff, 200_001)
    phi = np.asarray(
        bessel_basis(jnp.asarray(r, jnp.float32), jnp.pi * jnp.arange(1, n + 1.0), cutoff),
        dtype=np.float64,
    )
    gram = np.trapezoid(r[:, None, None] ** 2 * phi[:, :, None] * phi[:, None, :], r, axis=0)
    np.testing.assert_allclose(gram, np.eye(n), atol=2e-5)


@pytest.mark.parametrize("cutoff,p", [(6.0, 8), (5.0, 5), (3.0, 8)])
def test_envelope_value_and_derivatives_vanish_at_cutoff(cutoff, p):
    """At r = cutoff the envelope, its first and second derivative are exactly zero (jax.grad)."""
    f = lambda r: polynomial_cutoff(r, cutoff, p)  # noqa: E731
    r = jnp.float32(cutoff)
    values = jax.jit(lambda x: (f(x), jax.grad(f)(x), jax.grad(jax.grad(f))(x)))(r)
    assert [float(v) for v in values] == [0.0, 0.0, 0.0]
    # the analytic polynomial also has a triple zero at x = 1
    np.testing.assert_allclose(_envelope64(1.0, p), 0.0, atol=1e-9)


@pytest.mark.parametrize("cutoff,p", [(6.0, 8), (5.0, 5), (3.0, 8)])
def test_envelope_derivatives_continuous_below_cutoff(cutoff, p):
    """Just below the cutoff, jax's value, first and second derivative match the analytic float64
    ones and go to zero like δ³, δ², δ (δ = 1 - r / cutoff)."""
    f = lambda r: polynomial_cutoff(r, cutoff, p)  # noqa: E731
    f, d1, d2 = jax.jit(f), jax.jit(jax.grad(f)), jax.jit(jax.grad(jax.grad(f)))
    _, g1_scale, g2_scale = (abs(c) for c in _envelope64(0.5, p))
    for delta in (1e-1, 3e-2, 1e-2, 3e-3, 1e-3):
        x = 1 - delta
        r = jnp.float32(cutoff * x)
        x32 = float(r) / cutoff  # the x actually evaluated in float32
        want = _envelope64(x32, p)
        got = (float(f(r)), float(d1(r)) * cutoff, float(d2(r)) * cutoff**2)
        # float32 cancellation errors of the polynomial terms set the absolute tolerances
        np.testing.assert_allclose(got[0], want[0], atol=_envelope_atol(p))
        np.testing.assert_allclose(got[1], want[1], atol=2e-4 * max(1.0, g1_scale))
        np.testing.assert_allclose(got[2], want[2], atol=2e-4 * max(1.0, g2_scale * p))
        # leading-order behaviour: |f| ~ δ³, |f'| ~ δ², |f''| ~ δ with the constant |f'''(1)|;
        # jax's float32 values obey the same bounds up to their rounding tolerances
        k3 = p * (p + 1) * (p + 2)
        bounds = (k3 * delta**3 / 6 * 1.5, k3 * delta**2 / 2 * 1.5, k3 * delta * 1.5)
        assert all(abs(w) <= b for w, b in zip(want, bounds))
        assert abs(got[0]) <= bounds[0] + _envelope_atol(p)
        assert abs(got[1]) <= bounds[1] + 2e-4 * max(1.0, g1_scale)
        assert abs(got[2]) <= bounds[2] + 2e-4 * max(1.0, g2_scale * p)
    # the last point (δ = 1e-3) is close to zero in absolute terms
    assert abs(got[1]) < 1e-3 and abs(got[2]) < 2.0


@pytest.mark.parametrize("cutoff,p", [(6.0, 8), (5.0, 5)])
def test_radial_bessel_zero_beyond_cutoff_with_finite_gradients(cutoff, p):
    """At and beyond the cutoff the basis is exactly 0, its Jacobian is finite and exactly 0."""
    module = RadialBessel(num_radial=9, cutoff=cutoff, cutoff_coeff=p)
    params = module.init(jax.random.PRNGKey(0), jnp.ones(3))
    r = jnp.asarray([cutoff, cutoff * 1.0001, cutoff * 1.5, cutoff * 10.0], jnp.float32)

    @jax.jit
    def derivatives(prm, x):
        f = lambda y: module.apply(prm, y)  # noqa: E731
        return f(x), jax.vmap(jax.jacfwd(f))(x), jax.vmap(jax.jacfwd(jax.jacfwd(f)))(x)

    out, jac, hess = derivatives(params, r)
    assert np.all(np.asarray(out) == 0.0)
    assert np.all(np.isfinite(jac)) and np.all(np.isfinite(hess))
    assert np.all(np.asarray(jac) == 0.0) and np.all(np.asarray(hess) == 0.0)
    # gradients of a scalar loss through the module, w.r.t. r and the frequencies, are finite too
    loss = lambda prm, x: jnp.sum(module.apply(prm, x) ** 2)  # noqa: E731
    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, r)
    assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))


def test_radial_bessel_derivative_small_just_below_cutoff():
    """The basis derivative tends to zero continuously as r approaches the cutoff from below."""
    cutoff = 6.0
    module = RadialBessel(num_radial=31, cutoff=cutoff, cutoff_coeff=8)
    params = module.init(jax.random.PRNGKey(0), jnp.ones(3))
    jac = jax.jit(jax.vmap(jax.jacfwd(lambda x: module.apply(params, x))))
    r = jnp.asarray([cutoff * (1 - d) for d in (1e-1, 1e-2, 1e-3)], jnp.float32)
    sizes = np.abs(np.asarray(jac(r))).max(axis=1)
    assert sizes[0] > sizes[1] > sizes[2]
    assert sizes[2] < 1e-4 * sizes[0]


@pytest.mark.parametrize("order", [4, 15])
def test_fourier_basis_matches_torch(order):
    """`fourier_basis` equals chgnet's `Fourier` (learned frequencies copied in) on random angles."""
    rng = np.random.default_rng(3)
    theta = rng.uniform(0, np.pi, 211).astype(np.float32)
    torch_fourier = Fourier(order=order, learnable=True)
    freqs = _random_frequencies(rng, order, torch_fourier.frequencies.detach().numpy())
    with torch.no_grad():
        torch_fourier.frequencies.copy_(_t(freqs))
        want = torch_fourier(_t(theta)).numpy()
    got = np.asarray(fourier_basis(jnp.asarray(theta), jnp.asarray(freqs)))
    assert got.shape == want.shape == (211, 1 + 2 * order)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_fourier_basis_is_orthonormal_by_quadrature():
    """With integer frequencies the basis is orthonormal on [0, 2π] (float64 trapezoid)."""
    theta = np.linspace(0, 2 * np.pi, 100_001)
    phi = np.asarray(fourier_basis(jnp.asarray(theta, jnp.float32), jnp.arange(1, 6.0)), np.float64)
    gram = np.trapezoid(phi[:, :, None] * phi[:, None, :], theta, axis=0)
    np.testing.assert_allclose(gram, np.eye(11), atol=2e-5)


def _random_unit_vectors(rng, n):
    v = rng.standard_normal((n, 3))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_angle_between_matches_torch_and_analytic():
    """`angle_between` equals chgnet's ``acos(u·v (1 - 1e-6))`` and atan2(|u×v|, u·v) away from 0, π."""
    rng = np.random.default_rng(4)
    u, v = _random_unit_vectors(rng, 300), _random_unit_vectors(rng, 300)
    got = np.asarray(angle_between(jnp.asarray(u), jnp.asarray(v)))
    want_torch = torch.acos(torch.sum(_t(u) * _t(v), dim=1) * (1 - 1e-6)).numpy()
    np.testing.assert_allclose(got, want_torch, rtol=RTOL, atol=2e-6)
    u64, v64 = u.astype(np.float64), v.astype(np.float64)
    exact = np.arctan2(np.linalg.norm(np.cross(u64, v64), axis=1), np.sum(u64 * v64, axis=1))
    away = (exact > 0.05) & (exact < np.pi - 0.05)
    np.testing.assert_allclose(got[away], exact[away], atol=2e-5)


def test_angle_between_finite_gradient_at_parallel_vectors():
    """For parallel and antiparallel unit vectors the angle is ~0 / ~π with a finite gradient."""
    u = jnp.asarray([[0.0, 0.0, 1.0], [0.6, 0.8, 0.0]], jnp.float32)
    for sign, want in ((1.0, 0.0), (-1.0, np.pi)):
        theta = angle_between(u, sign * u)
        np.testing.assert_allclose(theta, want, atol=2e-3)  # the 1e-6 shrink gives ~1.4e-3 rad
        g = jax.grad(lambda a: jnp.sum(angle_between(a, sign * u)))(u)  # noqa: B023 - called at once
        assert np.all(np.isfinite(g))


@pytest.mark.parametrize("num_angular", [9, 31])
def test_fourier_angle_module_matches_angle_encoder(num_angular):
    """`FourierAngle(angle_between(u, v))` equals chgnet's `AngleEncoder(u, v)`, same frequencies."""
    rng = np.random.default_rng(5)
    u, v = _random_unit_vectors(rng, 150), _random_unit_vectors(rng, 150)
    encoder = AngleEncoder(num_angular=num_angular, learnable=True)
    order = (num_angular - 1) // 2
    freqs = _random_frequencies(rng, order, encoder.fourier_expansion.frequencies.detach().numpy())
    with torch.no_grad():
        encoder.fourier_expansion.frequencies.copy_(_t(freqs))
        want = encoder(_t(u), _t(v)).numpy()
    module = FourierAngle(num_angular=num_angular)
    init = module.init(jax.random.PRNGKey(0), jnp.ones(2))
    np.testing.assert_array_equal(init["params"]["frequencies"], np.arange(1, order + 1))
    angles = angle_between(jnp.asarray(u), jnp.asarray(v))
    got = np.asarray(module.apply({"params": {"frequencies": jnp.asarray(freqs)}}, angles))
    assert got.shape == want.shape == (150, num_angular)
    # acos amplifies the float32 rounding of u·v near 0 and π, hence a slightly looser atol
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_non_learnable_modules_have_no_params_and_canonical_frequencies():
    """``learnable=False`` gives no params and the canonical frequencies (chgnet's buffers)."""
    r = jnp.asarray(np.linspace(0.5, 5.5, 11), jnp.float32)
    module = RadialBessel(num_radial=9, cutoff=6.0, cutoff_coeff=8, learnable=False)
    assert module.init(jax.random.PRNGKey(0), r) == {}
    want = TorchRadialBessel(num_radial=9, cutoff=6.0, learnable=False, smooth_cutoff=8)(
        _t(r)
    ).numpy()
    np.testing.assert_allclose(module.apply({}, r), want, rtol=RTOL, atol=ATOL)
    theta = jnp.asarray(np.linspace(0, np.pi, 13), jnp.float32)
    fourier = FourierAngle(num_angular=9, learnable=False)
    assert fourier.init(jax.random.PRNGKey(0), theta) == {}
    want = Fourier(order=4, learnable=False)(_t(theta)).numpy()
    np.testing.assert_allclose(fourier.apply({}, theta), want, rtol=RTOL, atol=ATOL)


def test_shapes_for_batched_inputs():
    """Bases broadcast over leading axes: (..., ) -> (..., num_radial) and (..., num_angular)."""
    r = jnp.full((2, 3, 4), 2.5, jnp.float32)
    rbf = RadialBessel(num_radial=7, cutoff=6.0)
    out = jax.jit(rbf.apply)(rbf.init(jax.random.PRNGKey(0), r), r)
    assert out.shape == (2, 3, 4, 7)
    np.testing.assert_allclose(out, np.broadcast_to(out[0, 0, 0], out.shape))
    fourier = FourierAngle(num_angular=11)
    out = jax.jit(fourier.apply)(fourier.init(jax.random.PRNGKey(0), r), r)
    assert out.shape == (2, 3, 4, 11)
    assert polynomial_cutoff(r, 6.0, 8).shape == (2, 3, 4)
    assert angle_between(
        jnp.ones((5, 2, 3)) / np.sqrt(3), jnp.ones((5, 2, 3)) / np.sqrt(3)
    ).shape == (5, 2)


def test_fourier_angle_rejects_even_num_angular():
    """An even ``num_angular`` raises ValueError (as chgnet's AngleEncoder does)."""
    with pytest.raises(ValueError):
        FourierAngle(num_angular=8).init(jax.random.PRNGKey(0), jnp.ones(3))
    with pytest.raises(ValueError):
        AngleEncoder(num_angular=8)
