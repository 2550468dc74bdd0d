"""Multilayer perceptrons in CHGNet's layout: a plain MLP and the gated MLP
``act(norm(core(x))) * sigmoid(norm(gate(x)))``."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS = {
    "silu": jax.nn.silu,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # torch's default GELU is exact
    "softplus": jax.nn.softplus,
    "sigmoid": jax.nn.sigmoid,
}


def activation(name: str):
    """The activation function called ``name`` (silu, relu, tanh, gelu, softplus, sigmoid)."""
    try:
        return ACTIVATIONS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}") from None


def hidden_layers(hidden: int | Sequence[int] | None) -> tuple[int, ...]:
    """Normalise CHGNet's ``hidden_dim`` (None, 0, an int or a list) to a tuple of widths."""
    if hidden is None or hidden == 0:
        return ()
    if isinstance(hidden, int):
        return (hidden,)
    return tuple(int(h) for h in hidden)


def layer_norm(name: str | None = None) -> nn.LayerNorm:
    """LayerNorm with torch's conventions (epsilon 1e-5, two-pass variance)."""
    return nn.LayerNorm(epsilon=1e-5, use_fast_variance=False, name=name)


class MLP(nn.Module):
    """Dense layers with an activation between them: (..., d_in) -> (..., features).

    Params: ``Dense_0 .. Dense_k``, hidden widths from ``hidden`` (see `hidden_layers`).
    """

    features: int
    hidden: tuple[int, ...] = ()
    act: str = "silu"
    use_bias: bool = True
    zero_init_last: bool = False  # start the output at exactly 0 (e.g. an energy correction)

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        fn = activation(self.act)
        for width in self.hidden:
            x = fn(nn.Dense(width, use_bias=self.use_bias)(x))
        init = nn.initializers.zeros if self.zero_init_last else nn.initializers.lecun_normal()
        return nn.Dense(self.features, use_bias=self.use_bias, kernel_init=init)(x)


class GatedMLP(nn.Module):
    """``act(norm_core(core(x))) * sigmoid(norm_gate(gate(x)))``, CHGNet's gated MLP.

    Params: ``core`` and ``gate`` (`MLP`), and with ``norm="layer"`` ``norm_core``/``norm_gate``.
    Input (..., d_in), output (..., features).
    """

    features: int
    hidden: tuple[int, ...] = ()
    act: str = "silu"
    norm: str | None = "layer"

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        core = MLP(self.features, self.hidden, self.act, name="core")(x)
        gate = MLP(self.features, self.hidden, self.act, name="gate")(x)
        if self.norm == "layer":
            core = layer_norm("norm_core")(core)
            gate = layer_norm("norm_gate")(gate)
        elif self.norm is not None:
            raise ValueError(f"unsupported norm {self.norm!r} (use 'layer' or None)")
        return activation(self.act)(core) * jax.nn.sigmoid(gate)
