"""The sphere-grid self-connection (``self_connection: s2mlp``): a linear map of the layer's input
plus a pointwise MLP on the sphere grid (`equijax.nn.s2.S2MLP`) of it, in place of sevenn's linear
self-connection."""

from __future__ import annotations

import e3nn_jax as e3nn
import flax.linen as nn

from equijax.models.nequip.config import NequIPConfig
from equijax.nn.s2 import S2MLP


def natural_irreps(channels: int, lmax: int, is_parity: bool) -> e3nn.Irreps:
    """C x [0e + 1 + ... + lmax] with the model's parity labels (1o, 2e, ... or all "e")."""
    return e3nn.Irreps([(channels, (l, (-1) ** l if is_parity else 1)) for l in range(lmax + 1)])


class S2MLPSelfConnection(nn.Module):
    """(N, irreps_in) -> (N, ``irreps_out``): ``Linear(x) + Linear(S2MLP(Linear(x)))``.

    The grid MLP works on ``channels`` x [0 .. lmax] (lmax of ``irreps_out``), where ``channels``
    is the smallest multiplicity of ``irreps_out`` (at most 32), so its cost stays a fraction of
    the convolution's. SO(3)-only features are relabelled to natural parity for the grid and back.
    """

    config: NequIPConfig
    irreps_out: e3nn.Irreps

    @nn.compact
    def __call__(self, x: e3nn.IrrepsArray) -> e3nn.IrrepsArray:
        irreps_out = e3nn.Irreps(self.irreps_out)
        lmax = irreps_out.lmax
        channels = min(32, min(mul for mul, _ in irreps_out))
        linear = e3nn.flax.Linear(irreps_out, force_irreps_out=True, name="linear")(x)
        grid_irreps = natural_irreps(channels, lmax, self.config.is_parity)
        u = e3nn.flax.Linear(grid_irreps, force_irreps_out=True, name="to_grid")(x)
        natural = e3nn.IrrepsArray(natural_irreps(channels, lmax, True), u.array)
        v = S2MLP(channels, hidden=2 * channels, lmax_out=lmax, name="s2mlp")(natural)
        v = e3nn.IrrepsArray(grid_irreps, v.array)
        return linear + e3nn.flax.Linear(irreps_out, force_irreps_out=True, name="from_grid")(v)
