"""Activations scaled to unit second moment, ``c * f(x)`` with ``E[(c f(z))^2] = 1`` for
``z ~ N(0, 1)``: the convention of e3nn's gates and radial MLPs.

e3nn (torch) estimates ``c`` by Monte Carlo from a fixed seed; e3nn-jax by its own estimate. A
model converted from a torch package must use torch's numbers to agree to 1e-9, so both
conventions are offered: ``"e3nn-torch"`` (the table below, what e3nn's ``normalize2mom`` gives)
and ``"exact"`` (Gauss-Hermite quadrature, accurate to 1e-12).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal

import jax
import numpy as np

from equijax.nn.mlp import activation

ScaleConvention = Literal["e3nn-torch", "exact"]

E3NN_TORCH_SCALES = {
    "silu": 1.6791767923989418,
    "tanh": 1.5937334472592695,
    "sigmoid": 1.8467055342154763,
    "relu": 1.4163393446331365,
    "softplus": 1.0426436590527184,
}
"""``e3nn.math.normalize2mom(f).cst`` of e3nn 0.5-0.6 (torch), by activation name."""


_NUMPY = {  # float64 forms of the common activations for the quadrature
    "silu": lambda x: x / (1.0 + np.exp(-x)),
    "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "relu": lambda x: np.maximum(x, 0.0),
    "softplus": lambda x: np.logaddexp(0.0, x),
}


@functools.cache
def second_moment_scale(name: str) -> float:
    """``1 / sqrt(E[f(z)^2])`` for ``z ~ N(0, 1)`` by 200-point Gauss-Hermite quadrature."""
    z, w = np.polynomial.hermite_e.hermegauss(200)
    if name in _NUMPY:
        values = _NUMPY[name](z)
    else:  # evaluated in float64 whatever jax_enable_x64 says
        with jax.enable_x64(True):
            values = np.asarray(jax.device_get(activation(name)(jax.numpy.asarray(z))), np.float64)
    return float(1.0 / np.sqrt(np.sum(w * values**2) / np.sum(w)))


def activation_scale(name: str, convention: ScaleConvention = "e3nn-torch") -> float:
    """The factor ``c`` of activation ``name`` under ``convention`` (a name missing from
    `E3NN_TORCH_SCALES` falls back to the exact value)."""
    if convention == "e3nn-torch" and name in E3NN_TORCH_SCALES:
        return E3NN_TORCH_SCALES[name]
    if convention not in ("e3nn-torch", "exact"):
        raise ValueError(f"unknown scale convention {convention!r}: e3nn-torch or exact")
    return second_moment_scale(name)


def normalized_activation(name: str, convention: ScaleConvention = "e3nn-torch") -> Callable:
    """``x -> c * f(x)``: activation ``name`` scaled to unit second moment."""
    fn, scale = activation(name), activation_scale(name, convention)
    return lambda x: scale * fn(x)
