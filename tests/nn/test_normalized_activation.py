"""`equijax.nn.normalized_activation` against independent references: e3nn (torch)'s
``normalize2mom``, a Monte-Carlo estimate and scipy's adaptive quadrature of E[f(z)^2]."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from e3nn.math import normalize2mom
from scipy import integrate, special

from equijax.nn.normalized_activation import (
    E3NN_TORCH_SCALES,
    activation_scale,
    normalized_activation,
    second_moment_scale,
)

F = torch.nn.functional
TORCH_ACTS = {
    "silu": F.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": F.relu,
    "softplus": F.softplus,
}
# float64 numpy versions of the activations, written independently of equijax
NUMPY_ACTS = {
    "silu": lambda z: z * special.expit(z),
    "tanh": np.tanh,
    "sigmoid": special.expit,
    "relu": lambda z: np.maximum(z, 0.0),
    "softplus": lambda z: np.logaddexp(0.0, z),
}
NAMES = list(TORCH_ACTS)


def _quad_scale(name: str) -> float:
    """1 / sqrt(E[f(z)^2]) by scipy's adaptive quadrature, split at the kink of relu."""

    def integrand(z):
        return NUMPY_ACTS[name](z) ** 2 * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)

    opts = dict(epsabs=1e-14, epsrel=1e-13, limit=200)
    moment = integrate.quad(integrand, -np.inf, 0.0, **opts)[0]
    moment += integrate.quad(integrand, 0.0, np.inf, **opts)[0]
    return moment**-0.5


@pytest.fixture(scope="module")
def normal_samples():
    return np.random.default_rng(1234).standard_normal(4_000_000)


def test_torch_table_matches_normalize2mom():
    assert set(E3NN_TORCH_SCALES) == set(TORCH_ACTS)
    for name, fn in TORCH_ACTS.items():
        assert E3NN_TORCH_SCALES[name] == normalize2mom(fn).cst, name


@pytest.mark.parametrize("name", NAMES)
def test_second_moment_scale_matches_monte_carlo(name, normal_samples):
    want = np.mean(NUMPY_ACTS[name](normal_samples) ** 2) ** -0.5
    np.testing.assert_allclose(second_moment_scale(name), want, rtol=2e-3)


@pytest.mark.parametrize("name", NAMES)
def test_second_moment_scale_matches_quadrature(name):
    """Float32-level agreement (see the strict test below for the documented 1e-12)."""
    np.testing.assert_allclose(second_moment_scale(name), _quad_scale(name), rtol=1e-7)


def test_second_moment_scale_documented_precision():
    second_moment_scale.cache_clear()
    try:
        for name in NAMES:
            np.testing.assert_allclose(
                second_moment_scale(name), _quad_scale(name), rtol=1e-12, err_msg=name
            )
    finally:
        second_moment_scale.cache_clear()


@pytest.mark.parametrize("name", NAMES)
def test_activation_scale_conventions(name):
    torch_cst = normalize2mom(TORCH_ACTS[name]).cst
    assert activation_scale(name) == torch_cst
    assert activation_scale(name, "e3nn-torch") == torch_cst
    exact = activation_scale(name, "exact")
    assert exact == second_moment_scale(name)
    assert abs(exact / torch_cst - 1) < 1e-2


def test_missing_name_falls_back_to_exact():
    """gelu is not in the torch table: both conventions give the quadrature value."""
    exact = second_moment_scale("gelu")
    assert activation_scale("gelu", "e3nn-torch") == exact
    torch_cst = normalize2mom(lambda x: F.gelu(x)).cst
    assert abs(exact / torch_cst - 1) < 1e-2


@pytest.mark.parametrize("name", NAMES)
def test_normalized_activation_matches_torch(name):
    x = np.random.default_rng(0).normal(scale=3.0, size=64).astype(np.float32)
    with torch.no_grad():
        want = normalize2mom(TORCH_ACTS[name])(torch.tensor(x)).numpy()
    got = np.asarray(normalized_activation(name)(x))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_unknown_convention_raises():
    with pytest.raises(ValueError, match="convention"):
        activation_scale("silu", "bogus")
    with pytest.raises(ValueError, match="convention"):
        activation_scale("gelu", "bogus")
    with pytest.raises(ValueError, match="convention"):
        normalized_activation("tanh", "bogus")
