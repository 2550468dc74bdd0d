"""Pretrained SevenNet models: the checkpoints shipped inside the ``sevenn`` package, converted to
`NequIP` params on first use and cached with orbax, so later loads need no torch or sevenn."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import jax
import numpy as np

from equijax.models.nequip.config import PRESETS
from equijax.models.nequip.convert import (
    config_from_sevenn,
    convert_state_dict,
    load_sevenn_checkpoint,
)
from equijax.models.nequip.model import NequIP
from equijax.models.param_cache import default_cache_dir, restore_params, save_params

SEVENN_NAMES = {"sevennet-0": "7net-0", "sevennet-l3i5": "7net-l3i5"}
"""equijax's pretrained name -> the name sevenn gives the checkpoint in its package."""
CACHE_FORMAT = 1


def from_pretrained(
    name: str = "sevennet-0", *, cache_dir: str | os.PathLike | None = None, dtype=np.float32
) -> tuple[NequIP, dict]:
    """The pretrained SevenNet ``name`` (``"sevennet-0"`` or ``"sevennet-l3i5"``) as
    ``(module, params)``.

    The first call converts the checkpoint inside the ``sevenn`` package (needs torch and
    sevenn) and saves the params under ``cache_dir`` (default `default_cache_dir`); later calls
    restore them. ``dtype=np.float64`` gives double-precision params (use with x64).
    """
    if name not in SEVENN_NAMES:
        raise ValueError(f"unknown SevenNet model {name!r}; available: {sorted(SEVENN_NAMES)}")
    config = PRESETS[name]
    folder = Path(cache_dir or default_cache_dir()) / name
    meta = {"format": CACHE_FORMAT, "config": dataclasses.asdict(config)}
    params = restore_params(folder, meta)
    if params is None:
        state_dict, sevenn_config = load_sevenn_checkpoint(SEVENN_NAMES[name])
        converted = config_from_sevenn(sevenn_config, state_dict)
        if converted != config:
            raise ValueError(f"sevenn's {name} config does not match the preset: {converted}")
        params = convert_state_dict(state_dict, config)
        save_params(folder, params, meta)
    params = jax.tree_util.tree_map(lambda x: np.asarray(x, dtype=dtype), params)
    return NequIP(config), params
