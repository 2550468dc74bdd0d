"""A model saved to a folder: its registered name, its config (JSON) and its params (orbax).

`equijax.models.registry` treats such a folder like a pretrained name, so a derived model (e.g.
a Facet-trimmed SevenNet, `equijax.models.nequip.trim`) loads with ``registry.load_pretrained``,
``EquijaxCalculator.from_pretrained``, ``equijax predict --model DIR`` and
``model.pretrained: DIR`` in a training config.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import numpy as np

from equijax.models.param_cache import restore_params, save_params

MARKER = "equijax_model.json"
FORMAT = 1


def is_saved_model(path: str | os.PathLike) -> bool:
    """True if ``path`` is a folder written by `save_model`."""
    try:
        return (Path(path) / MARKER).is_file()
    except (TypeError, OSError):
        return False


def save_model(folder: str | os.PathLike, name: str, config, params, info: dict | None = None):
    """Write model ``name`` (registered), its ``config`` (a `BaseModelConfig`) and ``params`` to
    ``folder`` (replaced atomically); ``info`` (JSON) is kept beside them, e.g. how it was made."""
    folder = Path(folder)
    meta = {"format": FORMAT, "model": name, "config": config.to_dict()}
    save_params(folder / "params", jax.device_get(params), meta)
    (folder / MARKER).write_text(json.dumps({**meta, "info": info or {}}, indent=1))


def read_saved(folder: str | os.PathLike) -> tuple[str, dict, dict]:
    """``(model name, config dict, info)`` of a saved model folder."""
    meta = json.loads((Path(folder) / MARKER).read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{folder}: saved-model format {meta.get('format')} is not {FORMAT}")
    return meta["model"], meta["config"], meta.get("info", {})


def load_saved_params(folder: str | os.PathLike, dtype=np.float32) -> dict:
    """The params of a saved model folder, as ``dtype`` arrays."""
    folder = Path(folder)
    name, config, _ = read_saved(folder)
    params = restore_params(folder / "params", {"format": FORMAT, "model": name, "config": config})
    if params is None:
        raise ValueError(f"{folder}: params missing or not matching {MARKER}")
    return jax.tree_util.tree_map(lambda x: np.asarray(x, dtype=dtype), params)
