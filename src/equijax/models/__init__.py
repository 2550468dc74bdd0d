"""Whole models built from `equijax.nn`."""

from equijax.models.chgnet import PRESETS, CHGNet, CHGNetConfig

__all__ = ["PRESETS", "CHGNet", "CHGNetConfig"]
