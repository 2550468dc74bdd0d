"""MACE: the model (`MACE`), its config (`MACEConfig`, `PRESETS`) and the conversion of mace-torch
models (`from_torch`)."""

from equijax.models.mace.config import PRESETS, MACEConfig
from equijax.models.mace.model import MACE


def from_torch(model, **kwargs):
    """``(MACE module, params)`` of a mace-torch ``MACE``/``ScaleShiftMACE``; see
    `equijax.models.mace.convert.from_torch`."""
    from equijax.models.mace.convert import from_torch as convert

    return convert(model, **kwargs)


__all__ = ["PRESETS", "MACE", "MACEConfig", "from_torch"]
