"""A small equivariant message-passing potential (NequIP/MACE-like) assembled from equijax
layers, whose tensor product, radial and self-interaction are each one config value."""

from equijax.models.equivariant.config import EquivariantConfig
from equijax.models.equivariant.model import (
    EquivariantPotential,
    Interaction,
    RadialNetwork,
    VectorReadout,
    radial_basis,
)

__all__ = [
    "EquivariantConfig",
    "EquivariantPotential",
    "Interaction",
    "RadialNetwork",
    "VectorReadout",
    "radial_basis",
]
