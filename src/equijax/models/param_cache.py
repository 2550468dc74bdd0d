"""An on-disk cache of converted params (orbax), shared by every model with pretrained weights:
a checkpoint is converted from its PyTorch package once, and later loads need no torch."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import orbax.checkpoint as ocp


def default_cache_dir() -> Path:
    """``$EQUIJAX_CACHE`` or ``~/.cache/equijax``."""
    return Path(os.environ.get("EQUIJAX_CACHE", Path.home() / ".cache" / "equijax"))


def save_params(folder: Path, params: dict, meta: dict) -> None:
    """Write ``params`` (a pytree of arrays) and ``meta`` (JSON) to ``folder`` atomically: a
    killed write leaves the old cache or none, never a half-written one."""
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ocp.PyTreeCheckpointer().save((tmp / "params").absolute(), params)
    (tmp / "config.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def restore_params(folder: Path, meta: dict) -> dict | None:
    """The params cached in ``folder`` if its metadata equals ``meta``; None if absent, stale
    or unreadable (the caller then converts again)."""
    try:
        cached = json.loads((folder / "config.json").read_text())
        if cached != json.loads(json.dumps(meta)):
            return None
        return ocp.PyTreeCheckpointer().restore((folder / "params").absolute())
    except Exception:  # noqa: BLE001 - any unreadable cache is rebuilt from the source checkpoint
        return None
