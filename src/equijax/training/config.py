"""Typed training configuration, read from YAML and ``key=value`` overrides through OmegaConf.

An unknown key or a value of the wrong type raises `ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from equijax.configs import resolve_config
from equijax.configs.compose import compose_file, group_options, packaged_dir, split_overrides
from equijax.models import registry
from equijax.models.config import ConfigError
from equijax.nn.precision import PRECISIONS
from equijax.training.model_spec import ModelSpec, model_spec

__all__ = [
    "ConfigError",
    "DataConfig",
    "ExperimentConfig",
    "LossConfig",
    "ModelSpec",
    "OptimConfig",
    "StageTwoConfig",
    "TrainConfig",
    "load_config",
    "to_dict",
]


@dataclasses.dataclass
class DataConfig:
    """Where structures come from and how they are split and batched.

    ``source``: ``emt`` (generated with ASE's EMT), ``teacher`` (generated crystals labelled by
    the pretrained model ``teacher``, CHGNet 0.3.0 by default, cached as extxyz under
    ``cache_dir``, default ``~/.cache/equijax/teacher``), or a path to an extxyz/any ase.io file,
    an ASE ``.db`` or an MPtrj-layout ``.json``.
    """

    source: str = "emt"
    n_structures: int = 400
    fractions: list[float] = dataclasses.field(default_factory=lambda: [0.8, 0.1, 0.1])
    batch_size: int = 16
    seed: int = 0
    cache_dir: str | None = None
    teacher: str = "chgnet-0.3.0"  # the labelling model of source=teacher (e.g. sevennet-0)


@dataclasses.dataclass
class StageTwoConfig:
    """MACE's second training stage: from ``start`` (a fraction of the run's steps; 1.0, the
    default, never starts) on, the training loss takes these weights; ``None`` keeps the first
    stage's. For example ``start: 0.75, energy: 10`` weights the energy 10x in the last quarter.

    ``conservative_every`` k (a model with direct heads) replaces ``train.conservative_every`` in
    the second stage, counted from its first step (a conservative one): ``start: 0.75,
    conservative_every: 1`` is a conservative fine-tuning stage in which every step also fits
    the energy's gradients while the direct heads keep training."""

    start: float = 1.0
    energy: float | None = None
    forces: float | None = None
    stress: float | None = None
    magmoms: float | None = None
    conservative_every: int | None = None


@dataclasses.dataclass
class LossConfig:
    """Per-target loss: Huber (``delta``) or MSE, with weights for energy per atom, forces,
    stress and magmoms (chgnet's defaults 1 / 1 / 0.1 / 0.1), and optionally other weights for
    the end of training (``stage_two``; validation losses always use the first weights).

    ``gradient_forces`` / ``gradient_stress``: weights of the energy's gradient terms, -dE/dr
    and (1/V) dE/dε against the force and stress labels, in the conservative steps of a model
    with direct heads (``train.conservative_every``, ``stage_two.conservative_every``); None:
    the heads' current ``forces`` / ``stress`` weight (stage two's in stage two)."""

    kind: str = "huber"
    delta: float = 0.1
    energy: float = 1.0
    forces: float = 1.0
    stress: float = 0.1
    magmoms: float = 0.1
    gradient_forces: float | None = None
    gradient_stress: float | None = None
    stage_two: StageTwoConfig = dataclasses.field(default_factory=StageTwoConfig)


@dataclasses.dataclass
class OptimConfig:
    """optax optimizer: adam or adamw, warm-up then cosine decay, gradient clipping, and an EMA
    of the params for evaluation (decay ``min(ema_decay, (1 + step) / (10 + step))``; see
    `equijax.training.step.ema_update`)."""

    optimizer: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 20
    final_lr_fraction: float = 0.05
    clip_norm: float = 10.0
    ema_decay: float = 0.99
    # parameter-path prefixes kept fixed, e.g. ["atom_embedding", "conv_0"] (fine-tuning)
    freeze: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class TrainConfig:
    """Run length, evaluation, checkpoints and devices (``devices: 0`` = every device of every process)."""

    epochs: int = 10
    max_steps: int | None = None
    eval_every_epochs: int = 1
    # structures of the val and test splits each evaluation uses: 0 = the whole split; N > 0 =
    # the same seeded sample of N (a bound on evaluation time for a very large dataset)
    eval_max_structures: int = 0
    checkpoint_every_steps: int = 50
    keep_checkpoints: int = 3
    run_dir: str = "runs/default"
    devices: int = 0
    seed: int = 0
    prefetch: int = 2
    progress: bool = True
    # matmul precision of the train and eval steps: "default" (JAX's: TF32 on recent GPUs),
    # "float32", "tf32" or "bf16" (emulated on CPU to measure accuracy; equijax.nn.precision)
    matmul_precision: str = "default"
    # a model with direct heads: every k-th step also fits the energy's gradients (-dE/dr,
    # dE/dε/V) to the force and stress labels, so the energy learns from them too; 0: never
    conservative_every: int = 0


@dataclasses.dataclass
class LogConfig:
    """Scalar loggers beside the run's metrics.jsonl (`equijax.training.scalar_loggers`)."""

    # TensorBoard event files under <run_dir>/tensorboard (needs the 'tensorboard' extra)
    tensorboard: bool = False
    # a Weights & Biases project to log to as well (needs the 'wandb' extra); None: off
    wandb_project: str | None = None
    # "online", "offline" (files under <run_dir>/wandb, `wandb sync` later) or "disabled"
    wandb_mode: str = "online"


@dataclasses.dataclass
class ExperimentConfig:
    """One training experiment."""

    name: str = "default"
    # the ``model:`` section: ``name`` plus that model's own keys; a dict while OmegaConf merges
    # it, a checked `ModelSpec` once the config is built
    model: Any = dataclasses.field(default_factory=lambda: {"name": "chgnet"})
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    log: LogConfig = dataclasses.field(default_factory=LogConfig)

    def __post_init__(self):
        if isinstance(self.model, Mapping):
            self.model = model_spec(self.model)
        elif not isinstance(self.model, ModelSpec):
            raise ConfigError(
                f"config key 'model': must be a mapping with a 'name', got {self.model!r}"
            )


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> ExperimentConfig:
    """Defaults, then the YAML file at ``path`` (a packaged experiment's name works too) composed
    from its config groups, then overrides: ``group=option`` selects a group's option
    (``model=equivariant_small``), ``key=value`` sets a dotted key (``optim.learning_rate=1e-3``).

    A ``sweep:`` block in the file is ignored here (`equijax.sweep` reads it). Raises `ConfigError`
    naming the key for an unknown key, a wrong type or an unknown group option.
    """
    groups, overrides = split_overrides(list(overrides or []))
    try:
        composed = compose_experiment(path, groups)
        composed, overrides = _canonical_model_keys(composed, overrides)
        merged = OmegaConf.structured(ExperimentConfig)
        merged = OmegaConf.merge(merged, composed)
        if overrides:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(overrides))
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or _key_of(overrides or [], err)
        message = getattr(err, "msg", None) or str(err).splitlines()[0]
        raise ConfigError(f"config key {key!r}: {message}") from None
    _check(config)
    return config


def _canonical_model_keys(composed, overrides: list[str]):
    """The composed YAML and the overrides with the model's older key names (its config's
    ``KEY_ALIASES``, e.g. the equivariant model's ``spline_basis``) renamed to its fields', so
    that an override of either name replaces the YAML's value of either name."""
    name = next(
        (o.split("=", 1)[1] for o in reversed(overrides) if o.startswith("model.name=")), None
    )
    section = composed.get("model") if OmegaConf.is_dict(composed) else None
    name = name or (section.get("name") if OmegaConf.is_dict(section) else None) or "chgnet"
    if name not in registry.available():
        return composed, overrides  # model_spec names the unknown model
    aliases = registry.config_class(name).KEY_ALIASES
    if OmegaConf.is_dict(section):
        for alias, field in aliases.items():
            if alias in section and field in section:
                raise ConfigError(
                    f"config key 'model.{alias}': the same as model.{field}; set only one of them"
                )
            if alias in section:
                section[field] = section.pop(alias)
    renamed = []
    for override in overrides:
        key, sep, value = override.partition("=")
        alias = key.removeprefix("model.")
        if key.startswith("model.") and alias in aliases:
            key = f"model.{aliases[alias]}"
        renamed.append(key + sep + value)
    return composed, renamed


def compose_experiment(path: str | Path | None, groups: list[str] = ()):
    """The composed YAML of ``path`` (or of the groups alone) as a DictConfig, without its
    ``sweep`` block; raises `ConfigError`."""
    if path is None and not groups:
        return OmegaConf.create({})
    try:
        if path is None:
            return OmegaConf.merge(
                *[OmegaConf.create({g.split("=")[0].lstrip("+"): _group_yaml(g)}) for g in groups]
            )
        composed = compose_file(resolve_config(str(path)), groups)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    OmegaConf.set_struct(composed, False)
    composed.pop("sweep", None)
    return composed


def _group_yaml(selection: str):
    """The YAML of ``group=option`` from the packaged groups."""
    group, _, option = selection.lstrip("+").partition("=")
    if option not in group_options(group):
        raise ValueError(
            f"config key {group!r}: no option {option!r} in group {group} "
            f"(available: {group_options(group)})"
        )
    return OmegaConf.load(packaged_dir() / group / f"{option}.yaml")


def _key_of(overrides: list[str], err: Exception) -> str | None:
    """Best guess of the offending key when OmegaConf does not name it: an override whose key
    appears in the error text, else the first override."""
    keys = [o.split("=", 1)[0] for o in overrides]
    text = str(err)
    return next((k for k in keys if k in text), keys[0] if keys else None)


def _stage_two_checks(stage: StageTwoConfig, forces: str) -> list:
    """Checks of ``loss.stage_two``: a start in [0, 1], weights >= 0, a ``conservative_every``
    >= 0 only for direct heads, and some setting once it starts."""
    weights = {t: getattr(stage, t) for t in ("energy", "forces", "stress", "magmoms")}
    every = stage.conservative_every
    return [
        (0.0 <= stage.start <= 1.0, "loss.stage_two.start", "must be in [0, 1] (1: no stage two)"),
        *[
            (
                w is None or (math.isfinite(w) and w >= 0),
                f"loss.stage_two.{t}",
                "must be a finite number >= 0 or null",
            )
            for t, w in weights.items()
        ],
        (
            every is None or _count(every),
            "loss.stage_two.conservative_every",
            "must be an integer >= 0 or null",
        ),
        (
            not every or forces == "direct",
            "loss.stage_two.conservative_every",
            "needs model.forces=direct (a conservative model fits the energy's gradients at every "
            "step)",
        ),
        (
            stage.start >= 1.0 or every is not None or any(w is not None for w in weights.values()),
            "loss.stage_two",
            "starts before the end but sets nothing (energy, forces, stress, "
            "magmoms or conservative_every)",
        ),
    ]


def _gradient_weight_checks(config: ExperimentConfig) -> list:
    """Checks of ``loss.gradient_forces`` / ``loss.gradient_stress``: finite and >= 0 or null,
    and set only where some step fits the energy's gradients as well as the heads'."""
    has_conservative_steps = _conservative_every_key(config) is not None
    checks = []
    for key in ("gradient_forces", "gradient_stress"):
        w = getattr(config.loss, key)
        checks += [
            (
                w is None or (math.isfinite(w) and w >= 0),
                f"loss.{key}",
                "must be a finite number >= 0 or null",
            ),
            (
                w is None or has_conservative_steps,
                f"loss.{key}",
                "weighs the energy's gradient terms of a direct model's conservative steps: it needs "
                "model.forces=direct and train.conservative_every > 0, or "
                "loss.stage_two.conservative_every > 0 with loss.stage_two.start < 1 (a "
                f"conservative model weighs its gradient {key.removeprefix('gradient_')} with "
                f"loss.{key.removeprefix('gradient_')})",
            ),
        ]
    return checks


def _conservative_every_key(config: ExperimentConfig) -> str | None:
    """The config key that gives a direct model conservative steps (``train.conservative_every``,
    or a stage two's ``conservative_every`` where the stage can start); None: no such key. The
    run's own step count can still round a stage two away (`make_train_step` checks that)."""
    stage = config.loss.stage_two
    if config.train.conservative_every:
        return "train.conservative_every"
    if stage.conservative_every and stage.start < 1:
        return "loss.stage_two.conservative_every"
    return None


def stage_two_start_step(stage: StageTwoConfig, total_steps: int) -> int | None:
    """The first step of the second stage in a run of ``total_steps`` steps, ``round(start *
    total_steps)``; None when it never starts."""
    step = int(round(stage.start * total_steps))
    return None if stage.start >= 1.0 or step >= total_steps else step


def _count(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _check(config: ExperimentConfig) -> None:
    model = config.model
    checks = [
        (config.train.conservative_every >= 0, "train.conservative_every", "must be >= 0"),
        (
            config.train.conservative_every == 0 or model.is_direct,
            "train.conservative_every",
            "needs model.forces=direct (a conservative model fits "
            "the energy's gradients at every step)",
        ),
        (
            config.train.matmul_precision in PRECISIONS,
            "train.matmul_precision",
            f"must be one of {', '.join(PRECISIONS)}",
        ),
        (config.loss.kind in ("huber", "mse"), "loss.kind", "must be 'huber' or 'mse'"),
        *_stage_two_checks(config.loss.stage_two, model.config.forces),
        *_gradient_weight_checks(config),
        (
            config.optim.optimizer in ("adam", "adamw"),
            "optim.optimizer",
            "must be 'adam' or 'adamw'",
        ),
        (config.data.batch_size >= 1, "data.batch_size", "must be >= 1"),
        (config.optim.learning_rate > 0, "optim.learning_rate", "must be > 0"),
        (0 <= config.optim.ema_decay < 1, "optim.ema_decay", "must be in [0, 1)"),
        (config.train.checkpoint_every_steps >= 1, "train.checkpoint_every_steps", "must be >= 1"),
        (config.train.eval_every_epochs >= 1, "train.eval_every_epochs", "must be >= 1"),
        (config.train.eval_max_structures >= 0, "train.eval_max_structures", "must be >= 0"),
        (
            config.log.wandb_mode in ("online", "offline", "disabled"),
            "log.wandb_mode",
            f"must be online, offline or disabled, got {config.log.wandb_mode!r}",
        ),
        (config.train.epochs >= 1, "train.epochs", "must be >= 1"),
    ]
    for ok, key, why in checks:
        if not ok:
            raise ConfigError(f"config key {key!r}: {why}")
    every_key = _conservative_every_key(config)
    if getattr(model.config, "remat", False) and every_key:
        warnings.warn(
            f"model.remat with {every_key}: the conservative steps recompute "
            "the direct model's blocks inside a second derivative, which needs more "
            "memory than without remat (docs/chgnet.md, 'Memory'); consider "
            "model.remat=false",
            stacklevel=2,
        )


def to_dict(config: ExperimentConfig) -> dict[str, Any]:
    """Plain-dict form (for checkpoints and run directories)."""
    return {
        f.name: (
            model_spec(config.model).to_dict()
            if f.name == "model"
            else dataclasses.asdict(value)
            if dataclasses.is_dataclass(value)
            else value
        )
        for f in dataclasses.fields(config)
        for value in [getattr(config, f.name)]
    }
