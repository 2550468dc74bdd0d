"""Whole models built from `equijax.nn`, one package per architecture, and the registry that
names them (`equijax.models.registry`)."""

from equijax.models import registry
from equijax.models.chgnet import PRESETS, CHGNet, CHGNetConfig
from equijax.models.config import BaseModelConfig, ConfigError
from equijax.models.equivariant import EquivariantConfig, EquivariantPotential
from equijax.models.protocol import Model
from equijax.models.registry import available, build, config_class, load_pretrained

__all__ = [
    "PRESETS",
    "BaseModelConfig",
    "CHGNet",
    "CHGNetConfig",
    "ConfigError",
    "EquivariantConfig",
    "EquivariantPotential",
    "Model",
    "available",
    "build",
    "config_class",
    "load_pretrained",
    "registry",
]
