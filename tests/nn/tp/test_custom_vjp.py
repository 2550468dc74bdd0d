"""The hand-written backward of `gaunt_s2grid` ("grid", "operator"), the "dense" method and the
per-pass switch of "auto", against `jax.test_util.check_grads` (finite differences, orders 1 and 2)
in float64, on mixed parity classes, broadcast leading shapes and channelwise inputs."""

from __future__ import annotations

import e3nn_jax as e3nn
import jax
import numpy as np
import pytest
from jax.test_util import check_grads
from tp_helpers import irreps_array

from equijax.nn import tp
from equijax.nn.tp import gaunt_grid

pytestmark = pytest.mark.usefixtures("x64")

# name: (irreps1 of one channel, irreps2, mul2, lead1, lead2)
CASES = {
    "mixed_classes": ("0e + 0o + 1o + 1e + 2e", "0e + 1o + 1e", 1, (2,), (2,)),
    "broadcast": ("0e + 1o + 2e", "0e + 1o", 1, (2, 1), (3,)),
    "channelwise": ("0e + 1o + 2e", "0e + 1o + 2e", 2, (2,), (2,)),
}
METHODS = ("grid", "operator", "dense")


def _cases():
    for case, (_, _, mul2, _, _) in CASES.items():
        for method in METHODS:
            if method == "operator" and mul2 != 1:
                continue  # operator needs one function per sample in x2
            yield case, method


@pytest.mark.parametrize("case,method", list(_cases()))
def test_gradients_order_1_and_2(case, method):
    irreps1, irreps2, mul2, lead1, lead2 = CASES[case]
    rng = np.random.default_rng(0)
    i1 = (e3nn.Irreps(irreps1) * 2).regroup()
    i2 = (e3nn.Irreps(irreps2) * mul2).regroup()
    a1 = irreps_array(rng, i1, lead1).array
    a2 = irreps_array(rng, i2, lead2).array

    def f(p, q):
        x1, x2 = e3nn.IrrepsArray(i1, p), e3nn.IrrepsArray(i2, q)
        return tp.gaunt_s2grid(x1, x2, method=method).array

    check_grads(jax.jit(f), (a1, a2), order=2, modes=["rev"], atol=1e-6, rtol=1e-6)


def test_auto_switches_method_between_passes(monkeypatch):
    """A table where "operator" wins the forward and "dense" wins training: the undifferentiated
    product and its gradients (orders 1 and 2) must both be right."""
    picks = {"fwd": "operator", "fwdbwd": "dense"}
    monkeypatch.setattr(gaunt_grid.tuning, "fastest", lambda *a, **k: picks[a[5]])
    rng = np.random.default_rng(1)
    i1, i2 = (e3nn.Irreps("0e + 1o + 2e") * 2).regroup(), e3nn.Irreps("0e + 1o")
    a1, a2 = irreps_array(rng, i1, (3,)).array, irreps_array(rng, i2, (3,)).array

    def f(method):
        return lambda p, q: (
            tp.gaunt_s2grid(e3nn.IrrepsArray(i1, p), e3nn.IrrepsArray(i2, q), method=method).array
        )

    np.testing.assert_allclose(f("auto")(a1, a2), f("grid")(a1, a2), atol=1e-12)
    check_grads(f("auto"), (a1, a2), order=2, modes=["rev"], atol=1e-6, rtol=1e-6)
