"""Typed model configs: the base class every model's config derives from, and the one place where
a plain dict (a YAML ``model:`` section) becomes a checked config.

A model's config is a frozen dataclass deriving from `BaseModelConfig`. Its fields are the
model's own keys; choices are ``Literal`` types, and `BaseModelConfig.__post_init__` checks
every choice, so a config built from Python and one built from YAML are checked alike.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

Forces = Literal["conservative", "direct"]


class ConfigError(ValueError):
    """A configuration key is unknown or has a value of the wrong type or range; the message
    names the key (``config key 'model.n_conv': ...``)."""


class BaseModelConfig:
    """What every model config declares, besides its own fields.

    Subclasses are frozen dataclasses with at least the fields ``forces`` (`Forces`) and
    ``atom_graph_cutoff`` (Å; a property works too). Class attributes:

    ``bond_graph_cutoff``
        Bond-graph cutoff in Å for graph construction (CHGNet's angles); models that do not read
        the bond graph keep the default, 3 Å or the atom cutoff if smaller.
    ``KEY_ALIASES``
        Other names a config dict may use for a field (older configs' names), alias -> field.
    ``DENSE_ONLY``
        True when every matmul of the model is a flax ``nn.Dense``, so the TF32/bf16 emulation of
        `equijax.nn.precision` covers it on a CPU.
    ``DIRECT_HEAD_OPTIONS``
        Fields that shape only the direct force/stress heads: they keep their defaults unless
        ``forces="direct"`` (checked here), and a conservative copy of the model
        (`as_conservative`) takes their defaults.
    ``DIRECT_HEAD_PARAMS``
        Top-level param collections that exist only with direct heads.
    ``FREE_OPTIONS``
        Fields that may differ between a run and the run or pretrained model it starts from
        (heads, memory options): the rest is the architecture, which must agree.
    """

    KEY_ALIASES: ClassVar[dict[str, str]] = {}
    DENSE_ONLY: ClassVar[bool] = False
    DIRECT_HEAD_OPTIONS: ClassVar[tuple[str, ...]] = ()
    DIRECT_HEAD_PARAMS: ClassVar[tuple[str, ...]] = ()
    FREE_OPTIONS: ClassVar[tuple[str, ...]] = ("forces",)

    def __post_init__(self):
        check_choices(self)
        if not self.is_direct:  # a conservative model has no heads for these options to shape
            for f in dataclasses.fields(self):
                if f.name in self.DIRECT_HEAD_OPTIONS and getattr(self, f.name) != f.default:
                    raise ConfigError(
                        f"config key 'model.{f.name}': needs model.forces=direct (a "
                        f"conservative model has no heads), got {getattr(self, f.name)!r}"
                    )

    @property
    def bond_graph_cutoff(self) -> float:
        """Bond-graph cutoff in Å (unused by models that read only the atom graph)."""
        return min(3.0, self.atom_graph_cutoff)

    @property
    def is_direct(self) -> bool:
        """True when the model reads forces and stress out directly (no derivative)."""
        return self.forces == "direct"

    def check_numbers(self, numbers) -> None:
        """Raise `ValueError` for atomic numbers the model has no weights for (default: any
        element equijax's graphs accept is fine)."""

    def as_conservative(self):
        """This config with conservative forces and every direct-head option at its default."""
        defaults = {
            f.name: f.default
            for f in dataclasses.fields(self)
            if f.name in self.DIRECT_HEAD_OPTIONS
        }
        return dataclasses.replace(self, forces="conservative", **defaults)

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain JSON-ready values (tuples as lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }


@functools.cache
def _type_hints(cls) -> dict:
    return typing.get_type_hints(cls)


def field_choices(cls, name: str) -> tuple | None:
    """The allowed values of ``cls``'s field ``name`` when it is a ``Literal`` (``None`` included
    for an optional one), else None."""
    hint = _type_hints(cls)[name]
    values = _literal_values(hint)
    if not values:
        return None
    return values + ((None,) if type(None) in _union_args(hint) else ())


def check_choices(config) -> None:
    """Raise `ConfigError` naming the field for a ``Literal`` field holding another value."""
    for f in dataclasses.fields(config):
        allowed = field_choices(type(config), f.name)
        value = getattr(config, f.name)
        if allowed is not None and value not in allowed:
            raise ConfigError(
                f"config key 'model.{f.name}': must be one of "
                f"{', '.join(map(repr, allowed))}, got {value!r}"
            )


def config_from_dict(cls, values: Mapping[str, Any], model_name: str = "") -> Any:
    """``cls(**values)`` after checking each key and value against ``cls``'s fields.

    Keys may be the fields' names or their ``KEY_ALIASES``. Lists become tuples for tuple fields and ints become floats for float fields. Raises
    `ConfigError` naming the key for an unknown key (listing the valid ones), a value of the
    wrong type, or a value the config's own checks refuse.
    """
    hints = _type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    label = model_name or cls.__name__
    aliases = getattr(cls, "KEY_ALIASES", {})
    kwargs = {}
    for key, value in values.items():
        if key in aliases:
            if aliases[key] in values:
                raise ConfigError(
                    f"config key 'model.{key}': the same as model.{aliases[key]}; "
                    "set only one of them"
                )
            key = aliases[key]
        if key not in names:
            raise ConfigError(
                f"config key 'model.{key}': not a key of model {label!r}; its keys "
                f"are: {', '.join(names)}"
            )
        kwargs[key] = _coerce(key, value, hints[key])
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"config key 'model' ({label}): {err}") from None


def _union_args(hint) -> tuple:
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(hint)
    return (hint,)


def _coerce(key: str, value, hint):
    """``value`` as the type ``hint`` asks, or `ConfigError`."""
    args = _union_args(hint)
    if value is None:
        if type(None) in args:
            return None
        raise ConfigError(f"config key 'model.{key}': may not be null")
    for arg in (a for a in args if a is not type(None)):
        origin = typing.get_origin(arg)
        if origin is Literal:
            if value in typing.get_args(arg):
                return value
        elif arg is bool:
            if isinstance(value, bool):
                return value
        elif arg is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif arg is float:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
        elif arg is str:
            if isinstance(value, str):
                return value
        elif origin is tuple:
            item = typing.get_args(arg)[0]
            if isinstance(value, list | tuple) and all(
                isinstance(v, item) and not isinstance(v, bool) for v in value
            ):
                return tuple(value)
        elif isinstance(arg, type) and isinstance(value, arg):
            return value
    allowed = _literal_values(hint)
    expected = (
        f"one of {', '.join(map(repr, allowed))}"
        if allowed
        else " or ".join(_type_name(a) for a in args)
    )
    raise ConfigError(f"config key 'model.{key}': expected {expected}, got {value!r}")


def _literal_values(hint) -> tuple:
    """The ``Literal`` values inside a type hint (empty when it has none)."""
    return tuple(
        v for a in _union_args(hint) if typing.get_origin(a) is Literal for v in typing.get_args(a)
    )


def _type_name(hint) -> str:
    if hint is type(None):
        return "null"
    if typing.get_origin(hint) is tuple:
        return f"a list of {typing.get_args(hint)[0].__name__}"
    if typing.get_origin(hint) is Literal:
        return " or ".join(map(repr, typing.get_args(hint)))
    return getattr(hint, "__name__", str(hint))
