"""Compose an experiment YAML from config groups with Hydra's defaults lists.

Packaged groups live next to this file: ``model/``, ``data/``, ``train/`` (and ``experiment/``,
the composed experiments). An experiment file names its groups in a Hydra ``defaults`` list::

    defaults:
      - model: chgnet_small
      - data: emt_small
      - _self_
    optim:
      learning_rate: 0.003

A file anywhere on disk can do the same: the packaged groups are on its search path, and groups in
folders next to the file (``./model/mine.yaml``) are found first. The typed check of the composed
result is done by `equijax.training.config.load_config`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

GROUPS = ("model", "data", "train", "loss", "optim")
"""Config groups a ``group=option`` override can select (``model=equivariant_small``)."""

SEARCH_PATH = "pkg://equijax.configs"


def packaged_dir() -> Path:
    """The folder holding the packaged config groups."""
    return Path(str(resources.files("equijax.configs")))


def group_options(group: str, extra_dir: Path | None = None) -> list[str]:
    """Names of the options of ``group``: packaged ones plus those in ``extra_dir/group``."""
    names = set()
    for root in (packaged_dir(), extra_dir):
        if root is not None and (root / group).is_dir():
            names.update(p.stem for p in (root / group).glob("*.yaml"))
    return sorted(names)


def is_group_override(override: str) -> bool:
    """True for ``group=option`` where ``group`` is a config group (no dot in the key)."""
    key, sep, _ = override.partition("=")
    return bool(sep) and key.lstrip("+~") in GROUPS and "." not in key


def split_overrides(overrides: list[str]) -> tuple[list, list]:
    """``(group selections, dotted key=value overrides)``."""
    groups = [o for o in overrides if is_group_override(o)]
    return groups, [o for o in overrides if o not in groups]


def compose_file(path: str | Path, group_overrides: list[str] = ()) -> DictConfig:
    """The YAML at ``path`` with its ``defaults`` list resolved, and ``group=option`` selections
    applied (a group the file does not list is added). Raises `ValueError` naming the group for an
    unknown option."""
    path = Path(path).resolve()
    if path.suffix != ".yaml":
        raise ValueError(f"config {str(path)!r}: config files must end in .yaml")
    raw = OmegaConf.load(path)
    listed = set()
    for entry in raw.get("defaults", []) or []:
        if isinstance(entry, (dict, DictConfig)):
            listed.update(str(k).split("@")[0].lstrip("/") for k in entry)
    selections = []
    for override in group_overrides:
        key, _, value = override.partition("=")
        group = key.lstrip("+~")
        if value not in group_options(group, path.parent):
            raise ValueError(
                f"config key {group!r}: no option {value!r} in group {group} "
                f"(available: {group_options(group, path.parent)})"
            )
        selections.append(f"{group}={value}" if group in listed else f"+{group}={value}")
    if GlobalHydra.instance().is_initialized():  # e.g. called from inside a Hydra app
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base=None, config_dir=str(path.parent)):
            cfg = compose(path.stem, overrides=[f"hydra.searchpath=[{SEARCH_PATH}]", *selections])
    except HydraException as err:
        raise ValueError(f"config {str(path)!r}: {str(err).splitlines()[0]}") from None
    return cfg
