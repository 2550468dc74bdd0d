"""Checkpoints through orbax `CheckpointManager`: the train state plus JSON metadata (config,
data-loader position, metrics), the last N kept, and separately the best by validation loss."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

# the checkpoints a run keeps: the best by validation loss and the latest
SLOTS = ("best", "latest")


class CheckpointError(RuntimeError):
    """A checkpoint is corrupted or does not fit the current run; it was not loaded."""


class Checkpoints:
    """``run_dir/checkpoints`` (last ``keep``) and ``run_dir/best`` (lowest validation loss)."""

    def __init__(self, run_dir: str | Path, keep: int = 3):
        run_dir = Path(run_dir).absolute()
        self.last = ocp.CheckpointManager(
            run_dir / "checkpoints",
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        )
        self.best = ocp.CheckpointManager(
            run_dir / "best",
            options=ocp.CheckpointManagerOptions(
                max_to_keep=1, create=True, best_fn=lambda m: m["val_loss"], best_mode="min"
            ),
        )

    @staticmethod
    def _args(state, meta):
        return ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))

    def save(self, step: int, state, meta: dict[str, Any]) -> None:
        """Save the state and metadata at ``step`` (blocks until written, so a crash right after
        cannot leave a half-written latest checkpoint behind)."""
        self.last.save(step, args=self._args(state, meta), force=True)
        self.last.wait_until_finished()

    def save_best(self, step: int, state, meta: dict[str, Any], val_loss: float) -> None:
        """Offer a checkpoint to the best-by-validation slot."""
        self.best.save(
            step, args=self._args(state, meta), metrics={"val_loss": float(val_loss)}, force=True
        )
        self.best.wait_until_finished()

    def latest_step(self) -> int | None:
        return self.last.latest_step()

    def restore_latest(
        self, abstract_state, same_model: Callable[[dict], bool]
    ) -> tuple[Any, dict] | None:
        """The latest checkpoint as ``(state, meta)``, or None if there is none.

        ``same_model`` tells whether the model section saved with it describes this run's model.
        Raises `CheckpointError` (and loads nothing) if it cannot be read or was written for a
        different model configuration.
        """
        step = self.last.latest_step()
        if step is None:
            return None
        path = Path(self.last.directory) / str(step)
        try:
            meta = self.last.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))[
                "meta"
            ]
        except Exception as err:
            raise CheckpointError(
                f"checkpoint {path} is corrupted (metadata unreadable: {err})"
            ) from err
        if not same_model(meta.get("config", {}).get("model", {})):
            raise CheckpointError(
                f"checkpoint {path} was written for model {meta.get('config', {}).get('model')}, "
                "not this run's: refusing to load it"
            )
        try:
            target = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, abstract_state)
            restored = self.last.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
                ),
            )
        except Exception as err:
            raise CheckpointError(f"checkpoint {path} is corrupted or incompatible: {err}") from err
        return restored["state"], restored["meta"]

    def close(self) -> None:
        self.last.close()
        self.best.close()


def restore_ema_params(run_dir: str | Path, which: str = "best") -> dict:
    """The EMA params (the ``"params"`` collection's contents) of a run's ``which`` checkpoint:
    ``"best"`` (the `Checkpoints.best` slot, lowest validation loss) or ``"latest"``
    (`Checkpoints.last`). Read-only: nothing is created. Raises `FileNotFoundError` when the run
    has no such checkpoint."""
    if which not in SLOTS:
        raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
    run_dir = Path(run_dir).absolute()
    folder = run_dir / ("best" if which == "best" else "checkpoints")
    step = None
    if folder.exists():
        manager = ocp.CheckpointManager(folder, options=ocp.CheckpointManagerOptions(create=False))
        step = manager.latest_step()
    if step is None:
        raise FileNotFoundError(f"{run_dir}: no {which} checkpoint in {folder}")
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    manager.close()
    return restored["state"]["ema_params"]["params"]
