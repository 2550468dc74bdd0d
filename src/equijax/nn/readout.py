"""Readouts: per-atom energies, site-wise magnetic moments and the AtomRef composition model."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from equijax.nn.mlp import MLP, layer_norm

MAX_ELEMENTS = 94


class SiteEnergies(nn.Module):
    """Per-atom energies ``MLP(norm(x))``, eV: (N, F) -> (N,). CHGNet's ``mlp_first`` readout;
    the structure energy is their sum. The last layer starts at zero, so an untrained model
    predicts exactly the composition reference (AtomRef) energy."""

    hidden: tuple[int, ...] = (64, 64, 64)
    act: str = "silu"
    norm: str | None = "layer"

    @nn.compact
    def __call__(self, atom_feas: jax.Array) -> jax.Array:
        if self.norm == "layer":
            atom_feas = layer_norm("readout_norm")(atom_feas)
        elif self.norm is not None:
            raise ValueError(f"unsupported readout norm {self.norm!r}")
        return MLP(1, self.hidden, self.act, zero_init_last=True, name="mlp")(atom_feas)[..., 0]


class SiteMagmoms(nn.Module):
    """Magnetic moment magnitudes ``|w·x + b|``, μB: (N, F) -> (N,)."""

    @nn.compact
    def __call__(self, atom_feas: jax.Array) -> jax.Array:
        return jnp.abs(nn.Dense(1, name="site_wise")(atom_feas)[..., 0])


class AtomRef(nn.Module):
    """Composition reference energy per atom, eV: ``weights[Z - 1]`` for each atom (N,).

    Param ``weights`` (94,), a linear fit of energies per atom to composition (CHGNet's AtomRef
    on MPtrj in the pretrained models). The per-structure reference energy per atom is the mean
    over its atoms.
    """

    @nn.compact
    def __call__(self, numbers: jax.Array) -> jax.Array:
        weights = self.param("weights", nn.initializers.zeros, (MAX_ELEMENTS,))
        return jnp.take(weights, numbers - 1, mode="clip")
