"""e3nn's ``FullyConnectedNet``: the radial network of NequIP, SevenNet and MACE.

No biases; weights drawn N(0, 1) and divided by ``sqrt(fan_in)`` in the forward pass; a
unit-second-moment activation (`equijax.nn.normalized_activation`) after every layer but the last.
Param ``layer{k}`` has the shape of torch's ``layer{k}.weight``, (fan_in, fan_out), so converted weights copy as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import numpy as np

from equijax.nn.normalized_activation import ScaleConvention, normalized_activation


def fully_connected(x: jax.Array, weights: Sequence[jax.Array], act) -> jax.Array:
    """``x`` (..., n_0) through the layers ``weights[k]`` (n_k, n_k+1): (..., n_last)."""
    for k, w in enumerate(weights):
        x = x @ (w.astype(x.dtype) / np.sqrt(w.shape[0]))
        if k < len(weights) - 1:
            x = act(x)
    return x


class FullyConnectedNet(nn.Module):
    """(..., features[0]) -> (..., features[-1]); ``features`` lists every width, input first.

    Attributes:
        features: widths [in, hidden..., out].
        activation: activation name (`equijax.nn.mlp.activation`), scaled to unit second moment.
        scales: "e3nn-torch" (the constants of e3nn's torch ``normalize2mom``) or "exact".
    """

    features: Sequence[int]
    activation: str = "silu"
    scales: ScaleConvention = "e3nn-torch"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.shape[-1] != self.features[0]:
            raise ValueError(f"input has {x.shape[-1]} features, expected {self.features[0]}")
        weights = [
            self.param(f"layer{k}", nn.initializers.normal(1.0), (n_in, n_out))
            for k, (n_in, n_out) in enumerate(zip(self.features[:-1], self.features[1:]))
        ]
        return fully_connected(x, weights, normalized_activation(self.activation, self.scales))
