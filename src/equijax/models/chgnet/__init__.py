"""CHGNet (Deng et al. 2023): its config, the flax module, its direct heads and the conversion of
the pretrained PyTorch checkpoints (``chgnet-0.3.0``, ``chgnet-0.2.0`` in the registry)."""

from equijax.models.chgnet.config import PRESETS, CHGNetConfig
from equijax.models.chgnet.direct import CHGNetDirectHeads, LearnedEnergies
from equijax.models.chgnet.geometry import pair_lengths
from equijax.models.chgnet.model import CHGNet
from equijax.models.chgnet.pretrained import convert_state_dict, from_pretrained

__all__ = [
    "PRESETS",
    "CHGNet",
    "CHGNetConfig",
    "CHGNetDirectHeads",
    "LearnedEnergies",
    "convert_state_dict",
    "from_pretrained",
    "pair_lengths",
]
