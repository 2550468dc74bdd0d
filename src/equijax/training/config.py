"""Typed training configuration, read from YAML and ``key=value`` overrides through OmegaConf.

An unknown key or a value of the wrong type raises `ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A configuration key is unknown or has a value of the wrong type."""


@dataclasses.dataclass
class ModelConfig:
    """The model: ``name`` picks it ("chgnet" or "equivariant").

    CHGNet fields follow `equijax.models.CHGNetConfig`; ``atom_graph_cutoff`` and
    ``composition_model`` serve both; the ``equivariant`` fields follow
    `equijax.models.equivariant.EquivariantConfig` (``channels``, ``lmax``, ``num_layers``, ``tp``,
    ``radial``, ``self_interaction``, ``parity``; its ``num_radial`` is ``spline_basis``).
    """

    name: str = "chgnet"
    atom_fea_dim: int = 64
    bond_fea_dim: int = 64
    angle_fea_dim: int = 64
    num_radial: int = 31
    num_angular: int = 31
    n_conv: int = 4
    hidden_dim: int = 64
    mlp_hidden_dims: list[int] = dataclasses.field(default_factory=lambda: [64, 64, 64])
    atom_graph_cutoff: float = 6.0
    bond_graph_cutoff: float = 3.0
    composition_model: bool = True
    # equivariant model (name="equivariant")
    channels: int = 16
    lmax: int = 2
    num_layers: int = 2
    spline_basis: int = 8
    tp: str = "gaunt_grid"
    radial: str = "spline"
    self_interaction: str = "linear"
    parity: str = "natural"
    # "conservative" (forces/stress = -dE/dr, dE/dε/V) or "direct" (readout heads, no derivatives)
    forces: str = "conservative"
    # direct stress head: "independent" (its own weights), or plus the virial of the direct pair
    # forces, "virial" (stress labels also train the force weights) or "virial_detached" (not),
    # or "virial_only" (the virial alone)
    direct_stress: str = "independent"
    # the direct heads' pair weights (and CHGNet's angle-stress weights) are the MLP's outputs
    # divided by this (``DirectHeads.norm``), as MACE divides by the mean neighbour count;
    # 1 = plain sums (runs made before this option)
    direct_norm: float = 1.0
    # CHGNet direct stress: add a three-body term over the bond graph's angles
    direct_angle_stress: bool = False
    # CHGNet direct forces: add three-body (non-central) terms over the bond graph's angles; with
    # a virial direct_stress their virial joins the stress ("virial_only": the stress is the
    # virial of the force terms alone, exact for CHGNet-like energies)
    direct_angle_forces: bool = False
    # CHGNet: a learned pair energy with this many radial functions (0: none) joins the energy;
    # with direct heads its exact forces (and, with a virial direct_stress, virial) join the
    # heads' (equijax.nn.pair_energy); a conservative model differentiates it like the rest
    direct_pair_energy: int = 0
    # CHGNet: a learned three-body energy over the bond graph's angles with this many Chebyshev
    # terms (0: none), joined the same way (equijax.nn.angle_energy)
    direct_angle_energy: int = 0
    # CHGNet: the gradient the direct heads send into the trunk is multiplied by this
    direct_trunk_grad: float = 1.0
    # hidden widths of the direct heads' pair MLP (CHGNet; the equivariant model's use (channels,))
    direct_hidden_dims: list[int] = dataclasses.field(default_factory=lambda: [64])
    # CHGNet: rematerialise each convolution block in the backward pass (less memory; with
    # direct forces about a third of the step memory, see CHGNetConfig.remat)
    remat: bool = False
    # fine-tuning: start from the pretrained CHGNet of this version ("0.3.0" or "0.2.0"); its
    # architecture and graph cutoffs replace the CHGNet fields above
    pretrained: str | None = None
    # when fine-tuning: refit the AtomRef (per-element energies) on the training set, for labels
    # whose energy reference differs from the Materials Project's (fresh models always fit it)
    refit_atomref: bool = False
    # start from another run's best EMA params (a run directory of `equijax train`): leaves with
    # the same path and shape are copied, leaves only this model has (new heads) are fresh, and
    # leaves only the old model had are dropped; e.g. a direct -> conservative fine-tuning stage
    init_from: str | None = None


@dataclasses.dataclass
class DataConfig:
    """Where structures come from and how they are split and batched.

    ``source``: ``emt`` (generated with ASE's EMT), ``teacher`` (generated crystals labelled by
    the pretrained CHGNet 0.3.0, cached as extxyz under ``cache_dir``, default
    ``~/.cache/equijax/teacher``), or a path to an extxyz/any ase.io file, an ASE ``.db`` or an
    MPtrj-layout ``.json``.
    """

    source: str = "emt"
    n_structures: int = 400
    fractions: list[float] = dataclasses.field(default_factory=lambda: [0.8, 0.1, 0.1])
    batch_size: int = 16
    seed: int = 0
    cache_dir: str | None = None


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
    """optax optimizer: adam or adamw, warm-up then cosine decay, gradient clipping, EMA."""

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
class ExperimentConfig:
    """One training experiment."""

    name: str = "default"
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Defaults, then the YAML file at ``path`` (a packaged experiment's name works too) composed
    from its config groups, then overrides: ``group=option`` selects a group's option
    (``model=equivariant_small``), ``key=value`` sets a dotted key (``optim.learning_rate=1e-3``).

    A ``sweep:`` block in the file is ignored here (`equijax.sweep` reads it). Raises `ConfigError`
    naming the key for an unknown key, a wrong type or an unknown group option.
    """
    from equijax.configs.compose import split_overrides

    groups, overrides = split_overrides(list(overrides or []))
    try:
        merged = OmegaConf.structured(ExperimentConfig)
        merged = OmegaConf.merge(merged, compose_experiment(path, groups))
        if overrides:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(overrides))
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or _key_of(overrides or [], err)
        message = getattr(err, "msg", None) or str(err).splitlines()[0]
        raise ConfigError(f"config key {key!r}: {message}") from None
    _check(config)
    return config


def compose_experiment(path: str | Path | None, groups: list[str] = ()):
    """The composed YAML of ``path`` (or of the groups alone) as a DictConfig, without its
    ``sweep`` block; raises `ConfigError`."""
    from equijax.configs import resolve_config
    from equijax.configs.compose import compose_file

    if path is None and not groups:
        return OmegaConf.create({})
    try:
        if path is None:
            return OmegaConf.merge(*[OmegaConf.create({g.split("=")[0].lstrip("+"): _group_yaml(g)})
                                     for g in groups])
        composed = compose_file(resolve_config(str(path)), groups)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    OmegaConf.set_struct(composed, False)
    composed.pop("sweep", None)
    return composed


def _group_yaml(selection: str):
    """The YAML of ``group=option`` from the packaged groups."""
    from equijax.configs.compose import group_options, packaged_dir

    group, _, option = selection.lstrip("+").partition("=")
    if option not in group_options(group):
        raise ValueError(f"config key {group!r}: no option {option!r} in group {group} "
                         f"(available: {group_options(group)})")
    return OmegaConf.load(packaged_dir() / group / f"{option}.yaml")


def _key_of(overrides: list[str], err: Exception) -> str | None:
    """Best guess of the offending key when OmegaConf does not name it: an override whose key
    appears in the error text, else the first override."""
    keys = [o.split("=", 1)[0] for o in overrides]
    text = str(err)
    return next((k for k in keys if k in text), keys[0] if keys else None)


def _equivariant_checks(model: ModelConfig) -> list:
    """Choice checks of the equivariant model's fields (only when model.name is "equivariant")."""
    if model.name != "equivariant":
        return []
    from equijax.models.equivariant import CHOICES

    return [(getattr(model, key) in allowed, f"model.{key}", f"must be one of {', '.join(allowed)}")
            for key, allowed in CHOICES.items()]


def _stage_two_checks(stage: StageTwoConfig, forces: str) -> list:
    """Checks of ``loss.stage_two``: a start in [0, 1], weights >= 0, a ``conservative_every``
    >= 0 only for direct heads, and some setting once it starts."""
    weights = {t: getattr(stage, t) for t in ("energy", "forces", "stress", "magmoms")}
    every = stage.conservative_every
    return [
        (0.0 <= stage.start <= 1.0, "loss.stage_two.start", "must be in [0, 1] (1: no stage two)"),
        *[(w is None or (math.isfinite(w) and w >= 0), f"loss.stage_two.{t}",
           "must be a finite number >= 0 or null") for t, w in weights.items()],
        (every is None or _count(every), "loss.stage_two.conservative_every",
         "must be an integer >= 0 or null"),
        (not every or forces == "direct", "loss.stage_two.conservative_every",
         "needs model.forces=direct (a conservative model fits the energy's gradients at every "
         "step)"),
        (stage.start >= 1.0 or every is not None or any(w is not None for w in weights.values()),
         "loss.stage_two", "starts before the end but sets nothing (energy, forces, stress, "
         "magmoms or conservative_every)"),
    ]


def _gradient_weight_checks(config: ExperimentConfig) -> list:
    """Checks of ``loss.gradient_forces`` / ``loss.gradient_stress``: finite and >= 0 or null,
    and set only where some step fits the energy's gradients as well as the heads'."""
    has_conservative_steps = _conservative_every_key(config) is not None
    checks = []
    for key in ("gradient_forces", "gradient_stress"):
        w = getattr(config.loss, key)
        checks += [
            (w is None or (math.isfinite(w) and w >= 0), f"loss.{key}",
             "must be a finite number >= 0 or null"),
            (w is None or has_conservative_steps, f"loss.{key}",
             "weighs the energy's gradient terms of a direct model's conservative steps: it needs "
             "model.forces=direct and train.conservative_every > 0, or "
             "loss.stage_two.conservative_every > 0 with loss.stage_two.start < 1 (a "
             f"conservative model weighs its gradient {key.removeprefix('gradient_')} with "
             f"loss.{key.removeprefix('gradient_')})"),
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
    from equijax.nn.direct_heads import DIRECT_STRESS, valid_direct_norm, valid_trunk_grad
    from equijax.nn.precision import PRECISIONS

    checks = [
        (config.model.name in ("chgnet", "equivariant"), "model.name",
         "must be 'chgnet' or 'equivariant'"),
        (config.model.forces in ("conservative", "direct"), "model.forces",
         "must be 'conservative' or 'direct'"),
        (config.model.direct_stress in DIRECT_STRESS, "model.direct_stress",
         f"must be one of {', '.join(DIRECT_STRESS)}"),
        (config.model.direct_stress == "independent" or config.model.forces == "direct",
         "model.direct_stress", "needs model.forces=direct (conservative stress has no head)"),
        (valid_direct_norm(config.model.direct_norm), "model.direct_norm",
         "must be a finite number > 0"),
        (config.model.direct_norm == 1.0 or config.model.forces == "direct", "model.direct_norm",
         "needs model.forces=direct (a conservative model has no heads)"),
        (not config.model.direct_angle_stress or (config.model.forces == "direct"
                                                   and config.model.name == "chgnet"),
         "model.direct_angle_stress", "needs model.name=chgnet and model.forces=direct"),
        (not config.model.direct_angle_forces or (config.model.forces == "direct"
                                                   and config.model.name == "chgnet"),
         "model.direct_angle_forces", "needs model.name=chgnet and model.forces=direct"),
        *[check for key in ("direct_pair_energy", "direct_angle_energy") for check in (
            (_count(getattr(config.model, key)), f"model.{key}", "must be an integer >= 0"),
            (not getattr(config.model, key) or config.model.name == "chgnet",
             f"model.{key}", "needs model.name=chgnet"))],
        (config.model.direct_stress != "virial_only" or config.model.name == "chgnet",
         "model.direct_stress", "virial_only needs model.name=chgnet (the equivariant model's "
         "vector readout is not a pair or angle term)"),
        (valid_trunk_grad(config.model.direct_trunk_grad), "model.direct_trunk_grad",
         "must be a finite number >= 0"),
        (config.model.direct_trunk_grad == 1.0 or (config.model.forces == "direct"
                                                  and config.model.name == "chgnet"),
         "model.direct_trunk_grad", "needs model.name=chgnet and model.forces=direct"),
        (all(w >= 1 for w in config.model.direct_hidden_dims), "model.direct_hidden_dims",
         "widths must be >= 1"),
        (config.train.conservative_every >= 0, "train.conservative_every", "must be >= 0"),
        (config.train.conservative_every == 0 or config.model.forces == "direct",
         "train.conservative_every", "needs model.forces=direct (a conservative model fits "
         "the energy's gradients at every step)"),
        (config.train.matmul_precision in PRECISIONS, "train.matmul_precision",
         f"must be one of {', '.join(PRECISIONS)}"),
        (config.model.pretrained in (None, "0.3.0", "0.2.0"), "model.pretrained",
         "must be null, '0.3.0' or '0.2.0'"),
        (config.model.pretrained is None or config.model.name == "chgnet", "model.pretrained",
         "needs model.name=chgnet"),
        (not (config.model.pretrained and config.model.init_from), "model.init_from",
         "cannot be combined with model.pretrained"),
        *_equivariant_checks(config.model),
        (config.loss.kind in ("huber", "mse"), "loss.kind", "must be 'huber' or 'mse'"),
        *_stage_two_checks(config.loss.stage_two, config.model.forces),
        *_gradient_weight_checks(config),
        (config.optim.optimizer in ("adam", "adamw"), "optim.optimizer", "must be 'adam' or 'adamw'"),
        (config.data.batch_size >= 1, "data.batch_size", "must be >= 1"),
        (config.optim.learning_rate > 0, "optim.learning_rate", "must be > 0"),
        (0 <= config.optim.ema_decay < 1, "optim.ema_decay", "must be in [0, 1)"),
        (config.train.checkpoint_every_steps >= 1, "train.checkpoint_every_steps", "must be >= 1"),
        (config.train.eval_every_epochs >= 1, "train.eval_every_epochs", "must be >= 1"),
        (config.train.epochs >= 1, "train.epochs", "must be >= 1"),
    ]
    for ok, key, why in checks:
        if not ok:
            raise ConfigError(f"config key {key!r}: {why}")
    every_key = _conservative_every_key(config)
    if config.model.remat and config.model.name == "chgnet" and every_key:
        warnings.warn(f"model.remat with {every_key}: the conservative steps recompute "
                      "the direct model's blocks inside a second derivative, which needs more "
                      "memory than without remat (docs/chgnet.md, 'Memory'); consider "
                      "model.remat=false", stacklevel=2)


def to_dict(config: ExperimentConfig) -> dict[str, Any]:
    """Plain-dict form (for checkpoints and run directories)."""
    return dataclasses.asdict(config)
