"""Read a training run directory's config (its params: `equijax.training.checkpoint.restore_ema_params`)."""

from __future__ import annotations

import json
from pathlib import Path

from equijax.training.config import ExperimentConfig, load_config
from equijax.training.model_spec import model_spec


def run_config(run_dir: str | Path) -> ExperimentConfig:
    """The `ExperimentConfig` a training run was made with (its ``config.json``); raises
    `FileNotFoundError` when the directory is not an equijax training run."""
    config_path = Path(run_dir) / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(
            f"{Path(run_dir).absolute()}: no config.json (not an equijax training run)"
        )
    saved = json.loads(config_path.read_text())
    if "model" in saved:  # older run directories hold a flat section of every model's fields
        saved["model"] = model_spec(saved["model"], saved=True).to_dict()
    return load_config(None, _dotlist(saved))


def _dotlist(tree: dict, prefix: str = "") -> list[str]:
    """``{"model": {"n_conv": 2}}`` -> ``["model.n_conv=2"]`` (JSON values)."""
    out = []
    for key, value in tree.items():
        if isinstance(value, dict):
            out += _dotlist(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}={json.dumps(value)}")
    return out
