"""Optional scalar loggers beside the run's ``metrics.jsonl``: TensorBoard (``tensorboardX``, the
``tensorboard`` extra) and Weights & Biases (``wandb``, the ``wandb`` extra; off by default).

Both take the same records as `equijax.training.metrics.MetricsLog`: a dict with ``split``
(``train``/``val``/``test``), ``step`` and numbers (losses, MAEs, learning rate, structures/s,
data wait). Each number is logged as ``<split>/<key>`` at its step; strings and flags are not
scalars and are skipped.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol

from equijax.models.config import ConfigError


class ScalarLogger(Protocol):
    """Where a run's scalars go besides its JSONL log."""

    def log(self, step: int, scalars: dict[str, float]) -> None:
        """Log ``{tag: value}`` at ``step``."""

    def close(self) -> None:
        """Flush and close."""


def record_scalars(record: dict) -> tuple[int, dict[str, float]]:
    """A `MetricsLog` record as ``(step, {"<split>/<key>": value})``: finite or not, every
    number but ``step`` itself (bools and strings left out)."""
    split = record.get("split", "train")
    step = int(record.get("step", 0))
    scalars = {}
    for key, value in record.items():
        if key in ("split", "step") or isinstance(value, (bool, str)) or value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        scalars[f"{split}/{key}"] = number if math.isfinite(number) else float("nan")
    return step, scalars


def _missing(package: str, extra: str) -> ImportError:
    return ImportError(
        f"{package} is not installed: pip install 'equijax[{extra}]' (or pip install {package})"
    )


class TensorBoardLogger:
    """Scalars as TensorBoard event files under ``log_dir`` (``tensorboard --logdir`` it)."""

    def __init__(self, log_dir: str | Path):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise _missing("tensorboardX", "tensorboard") from None
        self.log_dir = Path(log_dir)
        self._writer = SummaryWriter(logdir=str(self.log_dir))

    def log(self, step: int, scalars: dict[str, float]) -> None:
        for tag, value in scalars.items():
            self._writer.add_scalar(tag, value, global_step=step)

    def close(self) -> None:
        self._writer.close()


class WandbLogger:
    """Scalars in a Weights & Biases run. ``mode``: "online", "offline" (files under
    ``run_dir/wandb``, to `wandb sync` later) or "disabled"; ``config``: the run's settings."""

    def __init__(
        self,
        run_dir: str | Path,
        project: str,
        name: str | None = None,
        mode: str = "online",
        config: dict | None = None,
    ):
        if mode not in ("online", "offline", "disabled"):
            raise ValueError(f"wandb mode must be online, offline or disabled, got {mode!r}")
        try:
            import wandb
        except ImportError:
            raise _missing("wandb", "wandb") from None
        self._run = wandb.init(
            project=project, name=name, dir=str(run_dir), mode=mode, config=config or {}
        )

    def log(self, step: int, scalars: dict[str, float]) -> None:
        self._run.log(scalars, step=step)

    def close(self) -> None:
        self._run.finish()


def make_loggers(log_config, run_dir: str | Path, config: dict, primary: bool = True) -> list:
    """The loggers a run's ``log:`` section (`equijax.training.config.LogConfig`) asks for, on
    the primary process only: TensorBoard under ``run_dir/tensorboard``, W&B with ``config`` as
    the run's settings. A logger whose package is missing raises `ConfigError` naming the key."""
    if not primary:
        return []
    loggers = []
    try:
        if log_config.tensorboard:
            loggers.append(TensorBoardLogger(Path(run_dir) / "tensorboard"))
    except ImportError as err:
        raise ConfigError(f"config key 'log.tensorboard': {err}") from None
    try:
        if log_config.wandb_project:
            loggers.append(
                WandbLogger(
                    run_dir,
                    log_config.wandb_project,
                    name=Path(run_dir).name,
                    mode=log_config.wandb_mode,
                    config=config,
                )
            )
    except ImportError as err:
        raise ConfigError(f"config key 'log.wandb_project': {err}") from None
    return loggers
