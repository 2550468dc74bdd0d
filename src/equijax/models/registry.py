"""The model registry: model names -> config class and module class, pretrained names ->
loaders. Training, `Potential`, the calculator, ``equijax predict``, the benchmarks and sweeps
know models only through it (and `equijax.models.protocol.Model`).

A new architecture is one package under ``equijax/models/`` plus one `register` call here (or in
user code: the registry is open)::

    from equijax.models import registry
    registry.register(registry.ModelEntry("tiny", TinyConfig, Tiny))
    module = registry.build("tiny", {"width": 8})
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from equijax.models import saved
from equijax.models.chgnet import PRESETS as CHGNET_PRESETS
from equijax.models.chgnet import CHGNet, CHGNetConfig
from equijax.models.chgnet.pretrained import from_pretrained as chgnet_from_pretrained
from equijax.models.config import BaseModelConfig, ConfigError, config_from_dict
from equijax.models.equivariant import EquivariantConfig, EquivariantPotential
from equijax.models.mace import MACE, MACEConfig
from equijax.models.nequip import PRESETS as NEQUIP_PRESETS
from equijax.models.nequip import NequIP, NequIPConfig
from equijax.models.nequip.pretrained import from_pretrained as nequip_from_pretrained
from equijax.models.protocol import Model, check_model


@dataclasses.dataclass(frozen=True)
class Pretrained:
    """A pretrained model: its architecture (``config``) and a loader returning
    ``(module, params)`` (keyword arguments such as ``cache_dir`` or ``dtype`` pass through)."""

    model: str
    config: BaseModelConfig
    load: Callable[..., tuple[Model, dict]]


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """A registered architecture: ``name`` (the YAML ``model.name``), its config class (a frozen
    dataclass deriving from `BaseModelConfig`), and the module class, called as
    ``module_class(config)``."""

    name: str
    config_class: type
    module_class: Callable[[Any], Model]


_MODELS: dict[str, ModelEntry] = {}
_PRETRAINED: dict[str, Pretrained] = {}
# names users passed before the registry existed: the CHGNet versions alone
_PRETRAINED_ALIASES = {
    "0.3.0": "chgnet-0.3.0",
    "0.2.0": "chgnet-0.2.0",
    "7net-0": "sevennet-0",  # sevenn's own names
    "7net-l3i5": "sevennet-l3i5",
}


def register(entry: ModelEntry, *, replace: bool = False) -> None:
    """Add ``entry``; registering a taken name raises `ValueError` unless ``replace``."""
    if not issubclass(entry.config_class, BaseModelConfig) or not dataclasses.is_dataclass(
        entry.config_class
    ):
        raise TypeError(
            f"model {entry.name!r}: its config class must be a dataclass deriving "
            "from equijax.models.config.BaseModelConfig"
        )
    if entry.name in _MODELS and not replace:
        raise ValueError(f"model {entry.name!r} is already registered")
    _MODELS[entry.name] = entry


def unregister(name: str) -> None:
    """Remove model ``name`` and its pretrained entries (a no-op for an unknown name)."""
    _MODELS.pop(name, None)
    for key in [k for k, p in _PRETRAINED.items() if p.model == name]:
        del _PRETRAINED[key]


def register_pretrained(name: str, pretrained: Pretrained, *, replace: bool = False) -> None:
    """Add the pretrained model ``name`` (e.g. ``"chgnet-0.3.0"``) of a registered model."""
    if pretrained.model not in _MODELS:
        raise ValueError(f"pretrained {name!r}: model {pretrained.model!r} is not registered")
    if name in _PRETRAINED and not replace:
        raise ValueError(f"pretrained model {name!r} is already registered")
    _PRETRAINED[name] = pretrained


def available() -> list[str]:
    """The registered model names."""
    return sorted(_MODELS)


def available_pretrained() -> list[str]:
    """The registered pretrained model names."""
    return sorted(_PRETRAINED)


def entry(name: str) -> ModelEntry:
    """The `ModelEntry` of ``name``; `ConfigError` listing the registered names otherwise."""
    if name not in _MODELS:
        raise ConfigError(
            f"config key 'model.name': unknown model {name!r}; registered: {', '.join(available())}"
        )
    return _MODELS[name]


def config_class(name: str) -> type:
    """The config dataclass of model ``name``."""
    return entry(name).config_class


def make_config(name: str, values: Mapping[str, Any] | BaseModelConfig) -> BaseModelConfig:
    """Model ``name``'s config from a dict of its keys (checked: an unknown key or a bad value is
    a `ConfigError` naming it), or a config instance, checked to be of the right class."""
    cls = config_class(name)
    if isinstance(values, BaseModelConfig):
        if not isinstance(values, cls):
            raise TypeError(f"model {name!r} takes a {cls.__name__}, got {type(values).__name__}")
        return values
    return config_from_dict(cls, values, name)


def build(name: str, config: Mapping[str, Any] | BaseModelConfig | None = None) -> Model:
    """The module of model ``name`` with ``config`` (a dict of its keys, or its config)."""
    return check_model(entry(name).module_class(make_config(name, config or {})))


def _saved(path: str) -> Pretrained:
    """A `Pretrained` entry for a model folder written by `equijax.models.saved.save_model`."""
    model, values, _ = saved.read_saved(path)
    config = make_config(model, values)

    def load(dtype=np.float32, **_):
        return entry(model).module_class(config), saved.load_saved_params(path, dtype)

    return Pretrained(model, config, load)


def pretrained_name(name: str) -> str:
    """The registered name of pretrained model ``name`` (``"0.3.0"`` -> ``"chgnet-0.3.0"``);
    `ValueError` listing the names for an unknown one."""
    key = _PRETRAINED_ALIASES.get(name, name)
    if key not in _PRETRAINED and not saved.is_saved_model(key):
        raise ValueError(
            f"unknown pretrained model {name!r}; available: {', '.join(available_pretrained())}"
            " (or a folder saved by equijax.models.saved.save_model)"
        )
    return key


def pretrained(name: str) -> Pretrained:
    """The `Pretrained` entry of ``name`` (``"0.3.0"``/``"0.2.0"`` mean ``"chgnet-..."``);
    `ValueError` listing the names otherwise."""
    key = pretrained_name(name)
    return _PRETRAINED[key] if key in _PRETRAINED else _saved(key)


def load_pretrained(name: str, **kwargs) -> tuple[Model, dict]:
    """``(module, params)`` of the pretrained model ``name`` (see `available_pretrained`)."""
    return pretrained(name).load(**kwargs)


register(ModelEntry("chgnet", CHGNetConfig, CHGNet))
register(ModelEntry("equivariant", EquivariantConfig, EquivariantPotential))
for _version, _config in CHGNET_PRESETS.items():
    register_pretrained(
        f"chgnet-{_version}",
        Pretrained(
            "chgnet", _config, lambda version=_version, **kw: chgnet_from_pretrained(version, **kw)
        ),
    )
register(ModelEntry("nequip", NequIPConfig, NequIP))
for _name, _config in NEQUIP_PRESETS.items():
    register_pretrained(
        _name,
        Pretrained("nequip", _config, lambda name=_name, **kw: nequip_from_pretrained(name, **kw)),
    )
register(ModelEntry("mace", MACEConfig, MACE))
