"""NequIP / SevenNet: the model (`NequIP`), its config (`NequIPConfig`, `PRESETS`), conversion
of sevenn checkpoints (`equijax.models.nequip.convert`) and the pretrained SevenNet models
(`from_pretrained`)."""

from equijax.models.nequip.config import PRESETS, NequIPConfig
from equijax.models.nequip.model import NequIP

__all__ = ["PRESETS", "NequIP", "NequIPConfig"]
