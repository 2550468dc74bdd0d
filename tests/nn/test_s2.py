"""Spherical-grid layers against identity, e3nn-jax's grid product and rotated/inverted inputs."""

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from equijax.nn.s2 import S2MLP, s2_activation

# jax_disable_most_optimizations (XLA backend -O0): about half the compile time; results agree
# to rounding (the tolerances here are far above it)
pytestmark = pytest.mark.usefixtures("fast_compiles")


@pytest.fixture(scope="module")
def x():
    return e3nn.normal("4x0e + 4x1o + 4x2e", jax.random.PRNGKey(0), (3,))


def test_identity_round_trip(x):
    np.testing.assert_allclose(s2_activation(x, lambda g: g).array, x.array, atol=2e-6)


def test_square_equals_e3nn_grid_product(x):
    """A degree-2 nonlinearity is exact on the chosen grid: same as e3nn's fine-grid product."""

    def both(x):
        ours = s2_activation(x, lambda g: g * g, lmax_out=4)
        signal = e3nn.to_s2grid(
            x.mul_to_axis(4), 12, 25, quadrature="gausslegendre", fft=False, p_val=1, p_arg=-1
        )  # over-resolved: exact to degree 23 / 24
        return ours, e3nn.from_s2grid(signal * signal, e3nn.s2_irreps(4), fft=False).axis_to_mul()

    ours, ref = jax.jit(both)(x)
    assert ours.irreps == ref.irreps
    np.testing.assert_allclose(ours.array, ref.array, atol=2e-5 * float(jnp.abs(ref.array).max()))


def test_s2mlp_equivariance_improves_with_degree(x):
    """Pointwise MLPs alias: the equivariance error falls with the resolved degree."""
    params = S2MLP(features=8, hidden=16, heads=2).init(jax.random.PRNGKey(1), x)
    rotation = e3nn.rand_matrix(jax.random.PRNGKey(5), ())
    errors = {}
    for degree in (2, 12):
        module = S2MLP(features=8, hidden=16, heads=2, degree=degree)

        @jax.jit
        def deviation(params, x, g, module=module):
            a = module.apply(params, x.transform_by_matrix(g))
            b = module.apply(params, x).transform_by_matrix(g)
            return jnp.abs(a.array - b.array).max() / jnp.abs(b.array).max()

        for name, g in (("rotation", rotation), ("inversion", -rotation)):
            errors[degree, name] = float(deviation(params, x, g))
    assert errors[12, "rotation"] < 1e-3 and errors[12, "inversion"] < 1e-3, errors
    assert errors[2, "rotation"] > 10 * errors[12, "rotation"], errors
    out = S2MLP(features=8, hidden=16, heads=2).apply(params, x)
    assert out.irreps == e3nn.Irreps("8x0e + 8x1o + 8x2e")


def test_bad_inputs_are_clear_errors(x):
    odd = e3nn.normal("4x0o + 4x1e", jax.random.PRNGKey(0), (3,))
    with pytest.raises(ValueError, match="parity"):
        s2_activation(odd, jnp.tanh)
    with pytest.raises(ValueError, match="heads"):
        S2MLP(features=8, heads=3).init(jax.random.PRNGKey(0), x)
