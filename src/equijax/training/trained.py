"""Load a trained model back from its run directory, ready for `equijax.potential.Potential`."""

from __future__ import annotations

import json
from pathlib import Path


def load_trained(run_dir: str | Path, which: str = "best"):
    """``(module, params)`` of a finished or running `equijax train` run.

    ``which``: ``"best"`` (lowest validation loss) or ``"latest"`` checkpoint. The params are the
    EMA params the run evaluates with. Raises `FileNotFoundError` when the run has no such
    checkpoint. Use as ``Potential(*load_trained(run_dir))``.
    """
    import orbax.checkpoint as ocp

    from equijax.training.config import load_config
    from equijax.training.loop import build_model

    run_dir = Path(run_dir).absolute()
    if which not in ("best", "latest"):
        raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
    folder = run_dir / ("best" if which == "best" else "checkpoints")
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"{run_dir}: no config.json (not an equijax training run)")
    manager = ocp.CheckpointManager(folder, options=ocp.CheckpointManagerOptions(create=False)) \
        if folder.exists() else None
    step = manager.latest_step() if manager else None
    if step is None:
        raise FileNotFoundError(f"{run_dir}: no {which} checkpoint in {folder}")
    raw = json.loads(config_path.read_text())
    config = load_config(None, _dotlist(raw))
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    manager.close()
    return build_model(config.model), {"params": restored["state"]["ema_params"]["params"]}


def _dotlist(tree: dict, prefix: str = "") -> list[str]:
    """``{"model": {"n_conv": 2}}`` -> ``["model.n_conv=2"]`` (JSON values)."""
    out = []
    for key, value in tree.items():
        if isinstance(value, dict):
            out += _dotlist(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}={json.dumps(value)}")
    return out
