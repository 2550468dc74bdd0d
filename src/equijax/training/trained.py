"""Load a trained model back from its run directory, ready for `equijax.potential.Potential`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from equijax.models.protocol import Model
from equijax.training.checkpoint import SLOTS, restore_ema_params
from equijax.training.model_setup import build_model
from equijax.training.run_dir import run_config

__all__ = ["load_trained", "run_config"]


def load_trained(
    run_dir: str | Path, which: str = "best", forces: str | None = None
) -> tuple[Model, dict]:
    """``(module, params)`` of a finished or running `equijax train` run.

    ``which``: ``"best"`` (lowest validation loss) or ``"latest"`` checkpoint. The params are the
    EMA params the run evaluates with. Raises `FileNotFoundError` when the run has no such
    checkpoint. Use as ``Potential(*load_trained(run_dir))``.

    ``forces="conservative"`` turns a model trained with direct heads into a conservative one:
    the same trunk and energy (learned pair and three-body energies included), forces and stress
    from the energy's gradients, the heads dropped (energy-conserving MD; useful after
    ``train.conservative_every`` or ``loss.stage_two.conservative_every``). ``None`` keeps the
    run's.
    """
    if which not in SLOTS:  # before reading anything
        raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
    model = run_config(run_dir).model
    trained_forces = model.config.forces
    if forces not in (None, "conservative", trained_forces):
        raise ValueError(
            f"forces={forces!r}: a run trained with {trained_forces} forces can be "
            "loaded as is (None) or as 'conservative'"
        )
    params = restore_ema_params(run_dir, which)
    if forces == "conservative" and model.is_direct:
        model = dataclasses.replace(model, config=model.config.as_conservative())
        params = {k: v for k, v in params.items() if k not in model.config.DIRECT_HEAD_PARAMS}
    return build_model(model), {"params": params}
