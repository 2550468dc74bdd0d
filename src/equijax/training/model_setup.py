"""The model of a training run and its first params: built through the registry, fresh (with
the AtomRef fitted on the training set), from a pretrained model (``model.pretrained``), or
from another run (``model.init_from``: `transfer_params`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from equijax.data import LabeledStructure, fit_atomref
from equijax.graphs import CrystalGraph
from equijax.models import registry
from equijax.models.protocol import Model
from equijax.nn.readout import MAX_ELEMENTS
from equijax.training.checkpoint import restore_ema_params
from equijax.training.config import ExperimentConfig
from equijax.training.model_spec import ModelSpec, model_spec


def build_model(model: ModelSpec) -> Model:
    """The flax module of a run's model section (the registry builds it from ``model.config``)."""
    model = model_spec(model)
    return registry.build(model.name, model.config)


def atomref_weights(structures: list[LabeledStructure]) -> np.ndarray:
    """The AtomRef's per-element energies (`MAX_ELEMENTS`,) fitted on ``structures``."""
    return fit_atomref(structures, MAX_ELEMENTS)


def initial_params(
    config: ExperimentConfig,
    module: Model,
    example: CrystalGraph,
    train_set: list[LabeledStructure],
    atomref: np.ndarray | None = None,
) -> dict:
    """Fresh params (AtomRef fitted on ``train_set``, or ``atomref`` (`MAX_ELEMENTS`,) eV when
    given: a built dataset's stored fit), the pretrained model's, or another run's
    (``model.init_from``, merged into fresh params with `transfer_params`) for fine-tuning."""
    model = config.model
    fitted = lambda: atomref_weights(train_set) if atomref is None else atomref

    fresh = module.init(jax.random.key(config.train.seed), example)
    if model.pretrained:
        params = registry.load_pretrained(model.pretrained)[1]
        # fresh heads (direct heads, new energy terms) on the pretrained trunk
        params = {"params": {**fresh["params"], **params["params"]}}
        if model.refit_atomref:
            params["params"]["atomref"]["weights"] = fitted()
        return params
    params = fresh
    if "atomref" in params["params"]:
        params["params"]["atomref"]["weights"] = fitted()
    if model.init_from:
        check_init_from(model)  # also when called outside `train` (which checks early)
        params, report = transfer_params(params, {"params": restore_ema_params(model.init_from)})
        if jax.process_index() == 0:  # also without progress bars: sweeps keep it in log.txt
            tqdm.write(
                f"init_from {model.init_from}: {len(report['copied'])} arrays "
                f"copied; fresh: {report['fresh'] or 'none'}; dropped: "
                f"{report['dropped'] or 'none'}"
            )
        if model.refit_atomref and "atomref" in params["params"]:
            params["params"]["atomref"]["weights"] = fitted()
    return params


def frozen_collections(config: ExperimentConfig, params: dict) -> tuple[str, ...]:
    """Top-level param collections the optimizer leaves fixed: the AtomRef and ``optim.freeze``.

    Raises `ValueError` naming ``optim.freeze`` for a name the model does not have."""
    names = sorted(params["params"])
    unknown = [n for n in config.optim.freeze if n not in names]
    if unknown:
        raise ValueError(
            f"config key 'optim.freeze': {unknown} are not parameter collections of "
            f"this model (available: {names})"
        )
    return ("atomref", *config.optim.freeze)


def count_params(params: dict) -> int:
    """Number of scalar parameters."""
    return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(params)))


def transfer_params(fresh: dict, source: dict) -> tuple[dict, dict[str, list[str]]]:
    """``fresh`` with every leaf that ``source`` has at the same path replaced by ``source``'s.

    For fine-tuning from another run (``model.init_from``): a model that switches heads keeps the
    trunk it shares with the source and starts the new heads fresh. Returns ``(params, report)``
    with ``report`` = ``{"copied": [...], "fresh": [...], "dropped": [...]}`` (leaf paths; fresh
    leaves exist only in ``fresh``, dropped ones only in ``source``). Raises `ValueError` naming the
    path when a shared leaf has a different shape (the architectures differ).
    """
    flat_source = {
        jax.tree_util.keystr(path): leaf
        for path, leaf in jax.tree_util.tree_leaves_with_path(source)
    }
    report: dict[str, list[str]] = {"copied": [], "fresh": [], "dropped": []}
    non_finite: list[str] = []

    def take(path, leaf):
        name = jax.tree_util.keystr(path)
        if name not in flat_source:
            report["fresh"].append(name)
            return leaf
        value = flat_source.pop(name)
        if np.shape(value) != np.shape(leaf):
            raise ValueError(
                f"model.init_from: parameter {name} has shape {np.shape(value)} in "
                f"the source run but {np.shape(leaf)} in this model; the "
                "architectures must agree (only heads may differ)"
            )
        report["copied"].append(name)
        if not np.isfinite(value).all():
            non_finite.append(name)
        return jax.numpy.asarray(value, dtype=jax.numpy.asarray(leaf).dtype)

    params = jax.tree_util.tree_map_with_path(take, fresh)
    report["dropped"] = sorted(flat_source)
    if not report["copied"]:
        raise ValueError(
            "model.init_from: the source run shares no parameter with this model "
            "(another model type?)"
        )
    if non_finite:
        raise ValueError(
            f"model.init_from: the source run has non-finite parameters: {non_finite[:5]}"
        )
    return params, report


def check_init_from(model: ModelSpec) -> None:
    """Check that ``model.init_from`` is a training run of the same model.

    Raises `FileNotFoundError` when the directory has no ``config.json``, and `ValueError` naming
    the fields when the run's model differs in more than its config's ``FREE_OPTIONS`` (heads,
    learned energy terms, memory options)."""
    config_path = Path(model.init_from) / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(
            f"model.init_from {model.init_from!r}: no config.json there (not "
            "an equijax training run; relative paths start at the working "
            "directory)"
        )
    section = json.loads(config_path.read_text()).get("model", {})
    source = model_spec({**section, "init_from": None}, saved=True)
    if source.name != model.name:
        raise ValueError(
            f"model.init_from {model.init_from!r}: the run trained model "
            f"{source.name!r}, not {model.name!r}"
        )
    mine, theirs = dataclasses.asdict(model.config), dataclasses.asdict(source.config)
    free = model.config.FREE_OPTIONS
    differ = sorted(k for k in mine if k not in free and theirs.get(k) != mine[k])
    if differ:
        pairs = ", ".join(f"{k}: {theirs.get(k)!r} there, {mine[k]!r} here" for k in differ)
        raise ValueError(
            f"model.init_from {model.init_from!r}: the run's model differs in {pairs}; "
            f"only {', '.join(free)} may change"
        )
