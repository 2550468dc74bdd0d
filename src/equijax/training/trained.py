"""Load a trained model back from its run directory, ready for `equijax.potential.Potential`."""

from __future__ import annotations

import json
from pathlib import Path


def run_config(run_dir: str | Path):
    """The `ExperimentConfig` a training run was made with (its ``config.json``); raises
    `FileNotFoundError` when the directory is not an equijax training run."""
    from equijax.training.config import load_config

    config_path = Path(run_dir) / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"{Path(run_dir).absolute()}: no config.json (not an equijax "
                                "training run)")
    return load_config(None, _dotlist(json.loads(config_path.read_text())))


def load_trained(run_dir: str | Path, which: str = "best", forces: str | None = None):
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
    import dataclasses

    import orbax.checkpoint as ocp

    from equijax.training.config import ModelConfig
    from equijax.training.loop import build_model

    run_dir = Path(run_dir).absolute()
    if which not in ("best", "latest"):
        raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
    config = run_config(run_dir)
    if forces not in (None, "conservative", config.model.forces):
        raise ValueError(f"forces={forces!r}: a run trained with {config.model.forces} forces can be "
                         "loaded as is (None) or as 'conservative'")
    folder = run_dir / ("best" if which == "best" else "checkpoints")
    manager = ocp.CheckpointManager(folder, options=ocp.CheckpointManagerOptions(create=False)) \
        if folder.exists() else None
    step = manager.latest_step() if manager else None
    if step is None:
        raise FileNotFoundError(f"{run_dir}: no {which} checkpoint in {folder}")
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    manager.close()
    params = restored["state"]["ema_params"]["params"]
    model = config.model
    if forces == "conservative" and model.forces == "direct":
        plain = ModelConfig()
        model = dataclasses.replace(model, forces="conservative",
                                    **{k: getattr(plain, k) for k in DIRECT_HEAD_OPTIONS})
        params = {k: v for k, v in params.items() if k not in DIRECT_HEAD_PARAMS}
    return build_model(model), {"params": params}


def transfer_params(fresh: dict, source: dict) -> tuple[dict, dict[str, list[str]]]:
    """``fresh`` with every leaf that ``source`` has at the same path replaced by ``source``'s.

    For fine-tuning from another run (``model.init_from``): a model that switches heads keeps the
    trunk it shares with the source and starts the new heads fresh. Returns ``(params, report)``
    with ``report`` = ``{"copied": [...], "fresh": [...], "dropped": [...]}`` (leaf paths; fresh
    leaves exist only in ``fresh``, dropped ones only in ``source``). Raises `ValueError` naming the
    path when a shared leaf has a different shape (the architectures differ).
    """
    import jax
    import numpy as np

    flat_source = {jax.tree_util.keystr(path): leaf
                   for path, leaf in jax.tree_util.tree_leaves_with_path(source)}
    report: dict[str, list[str]] = {"copied": [], "fresh": [], "dropped": []}
    non_finite: list[str] = []

    def take(path, leaf):
        name = jax.tree_util.keystr(path)
        if name not in flat_source:
            report["fresh"].append(name)
            return leaf
        value = flat_source.pop(name)
        if np.shape(value) != np.shape(leaf):
            raise ValueError(f"model.init_from: parameter {name} has shape {np.shape(value)} in "
                             f"the source run but {np.shape(leaf)} in this model; the "
                             "architectures must agree (only heads may differ)")
        report["copied"].append(name)
        if not np.isfinite(value).all():
            non_finite.append(name)
        return jax.numpy.asarray(value, dtype=jax.numpy.asarray(leaf).dtype)

    params = jax.tree_util.tree_map_with_path(take, fresh)
    report["dropped"] = sorted(flat_source)
    if not report["copied"]:
        raise ValueError("model.init_from: the source run shares no parameter with this model "
                         "(another model type?)")
    if non_finite:
        raise ValueError("model.init_from: the source run has non-finite parameters: "
                         f"{non_finite[:5]}")
    return params, report


# Model fields that may differ between a run and the run it starts from (``model.init_from``);
# any other difference (layer sizes, cutoffs, basis sizes, the model type) is an error.
# ModelConfig fields that shape only the direct heads (a conservative model takes the defaults)
DIRECT_HEAD_OPTIONS = ("direct_stress", "direct_norm", "direct_angle_stress", "direct_angle_forces",
                       "direct_trunk_grad")
# learned energy terms: a conservative model keeps them (their params and options), but a run may
# start from one with other terms (new ones start at zero, dropped ones are reported)
LEARNED_ENERGY_OPTIONS = ("direct_pair_energy", "direct_angle_energy")
INIT_FROM_MAY_DIFFER = ("forces", *DIRECT_HEAD_OPTIONS, *LEARNED_ENERGY_OPTIONS, "init_from",
                        "remat", "refit_atomref")
# param collections that exist only with direct heads (CHGNet's and the equivariant model's)
DIRECT_HEAD_PARAMS = ("direct_heads", "force_readout", "angle_stress_mlp", "angle_force_mlp")


def check_init_from(model) -> None:
    """Check that ``model.init_from`` (a `ModelConfig`'s) is a training run with the same model.

    Raises `FileNotFoundError` when the directory has no ``config.json``, and `ValueError` naming
    the fields when the run's model differs in more than `INIT_FROM_MAY_DIFFER`.
    """
    import dataclasses

    config_path = Path(model.init_from) / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"model.init_from {model.init_from!r}: no config.json there (not "
                                "an equijax training run; relative paths start at the working "
                                "directory)")
    source = json.loads(config_path.read_text()).get("model", {})
    mine = dataclasses.asdict(model)
    differ = sorted(k for k in mine if k not in INIT_FROM_MAY_DIFFER and k in source
                    and source[k] != mine[k])
    if differ:
        pairs = ", ".join(f"{k}: {source[k]!r} there, {mine[k]!r} here" for k in differ)
        raise ValueError(f"model.init_from {model.init_from!r}: the run's model differs in {pairs}; "
                         f"only {', '.join(INIT_FROM_MAY_DIFFER)} may change")


def _dotlist(tree: dict, prefix: str = "") -> list[str]:
    """``{"model": {"n_conv": 2}}`` -> ``["model.n_conv=2"]`` (JSON values)."""
    out = []
    for key, value in tree.items():
        if isinstance(value, dict):
            out += _dotlist(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}={json.dumps(value)}")
    return out
