"""The ``model:`` section of a training config: the model's name and its own keys (checked
against that model's config class through the registry), plus the keys training reads to start
the run (``pretrained``, ``init_from``, ``refit_atomref``).

Run directories written before models had their own configs hold a flat section with every
model's fields; `model_spec` reads them too (`upgrade_legacy_section`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from equijax.models import registry
from equijax.models.config import BaseModelConfig, ConfigError

# keys of the model section that training reads, besides the model's own
TRAINING_KEYS = ("name", "pretrained", "init_from", "refit_atomref")

# every field of the flat training ModelConfig that the registry replaced: a run directory
# written before holds them all, for whichever model it trained
LEGACY_FLAT_KEYS = (
    "atom_fea_dim",
    "bond_fea_dim",
    "angle_fea_dim",
    "num_radial",
    "num_angular",
    "n_conv",
    "hidden_dim",
    "mlp_hidden_dims",
    "atom_graph_cutoff",
    "bond_graph_cutoff",
    "composition_model",
    "channels",
    "lmax",
    "num_layers",
    "spline_basis",
    "tp",
    "radial",
    "self_interaction",
    "parity",
    "forces",
    "direct_stress",
    "direct_norm",
    "direct_angle_stress",
    "direct_angle_forces",
    "direct_pair_energy",
    "direct_angle_energy",
    "direct_trunk_grad",
    "direct_hidden_dims",
    "remat",
)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A checked model section: ``name`` (registered), ``config`` (that model's typed config),
    ``pretrained`` (a pretrained name to start from, e.g. ``"chgnet-0.3.0"``; its architecture
    is ``config``'s), ``init_from`` (another run directory to start from) and ``refit_atomref``
    (refit the per-element energies on the training set when starting from either)."""

    name: str
    config: BaseModelConfig
    pretrained: str | None = None
    init_from: str | None = None
    refit_atomref: bool = False

    @property
    def is_direct(self) -> bool:
        """True when the model has direct force and stress heads."""
        return self.config.is_direct

    def to_dict(self) -> dict[str, Any]:
        """The section as plain values: what `model_spec` reads back to an equal spec."""
        return {
            "name": self.name,
            **self.config.to_dict(),
            "pretrained": self.pretrained,
            "init_from": self.init_from,
            "refit_atomref": self.refit_atomref,
        }


def model_spec(section: Mapping[str, Any] | ModelSpec, saved: bool = False) -> ModelSpec:
    """The `ModelSpec` of a ``model:`` section (a dict). Raises `ConfigError` naming the key for
    an unknown model, a key the model does not have (listing its keys) or a bad value.

    ``saved``: the section comes from a run directory or checkpoint, which may hold the flat
    section of equijax before models had their own configs (`upgrade_legacy_section`)."""
    if isinstance(section, ModelSpec):
        return section
    section = dict(section)
    name = section.pop("name", "chgnet")
    if not isinstance(name, str):
        raise ConfigError(f"config key 'model.name': must be a string, got {name!r}")
    cls = registry.config_class(name)
    pretrained = section.pop("pretrained", None)
    init_from = section.pop("init_from", None)
    refit_atomref = section.pop("refit_atomref", False)
    if not isinstance(refit_atomref, bool):
        raise ConfigError(
            f"config key 'model.refit_atomref': must be true or false, got {refit_atomref!r}"
        )
    for key, value in (("pretrained", pretrained), ("init_from", init_from)):
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"config key 'model.{key}': must be a string or null, got {value!r}")
    own = {f.name for f in dataclasses.fields(cls)} | set(cls.KEY_ALIASES)
    unknown = [k for k in section if k not in own]
    legacy = saved and bool(unknown) and all(k in LEGACY_FLAT_KEYS for k in unknown)
    if legacy:
        section = upgrade_legacy_section(section, cls)
        if pretrained is not None:  # the flat section held defaults, not the preset's values
            section = {
                k: v
                for k, v in section.items()
                if k in registry.pretrained(pretrained).config.FREE_OPTIONS
            }
    elif unknown:
        raise ConfigError(
            f"config key 'model.{unknown[0]}': not a key of model {name!r}; its "
            f"keys are: {', '.join([*TRAINING_KEYS, *sorted(own)])}"
        )
    if pretrained is None:
        return ModelSpec(name, registry.make_config(name, section), None, init_from, refit_atomref)
    if init_from:
        raise ConfigError("config key 'model.init_from': cannot be combined with model.pretrained")
    try:
        pretrained = registry.pretrained_name(pretrained)  # "0.3.0" -> "chgnet-0.3.0"
        source = registry.pretrained(pretrained)
    except ValueError as err:
        raise ConfigError(f"config key 'model.pretrained': {err}") from None
    if source.model != name:
        raise ConfigError(
            f"config key 'model.pretrained': {pretrained!r} is a {source.model} "
            f"model, but model.name is {name!r}"
        )
    return ModelSpec(
        name, _pretrained_config(name, source.config, section), pretrained, None, refit_atomref
    )


def _pretrained_config(name: str, preset: BaseModelConfig, section: dict) -> BaseModelConfig:
    """``preset`` with the section's `FREE_OPTIONS` (heads, memory options); any other key must
    equal the preset's value (the architecture comes from the pretrained model)."""
    keys = registry.make_config(name, section)  # checks the keys and values
    free = {k: getattr(keys, k) for k in section if k in preset.FREE_OPTIONS}
    config = dataclasses.replace(preset, **free)
    fixed = [
        k
        for k in section
        if k not in preset.FREE_OPTIONS
        and getattr(keys, preset.KEY_ALIASES.get(k, k))
        != getattr(config, preset.KEY_ALIASES.get(k, k))
    ]
    if fixed:
        raise ConfigError(
            f"config key 'model.{fixed[0]}': set by the pretrained model "
            f"({getattr(config, preset.KEY_ALIASES.get(fixed[0], fixed[0]))!r}); "
            f"with model.pretrained only {', '.join(preset.FREE_OPTIONS)} may be "
            "set"
        )
    return config


def upgrade_legacy_section(section: dict, cls: type) -> dict:
    """A flat model section of a run directory written before models had their own configs,
    reduced to the keys of its model ``cls`` (the other models' fields never affected it); a
    flat key that was this model's name for a field (``KEY_ALIASES``) gives that field."""
    section = dict(section)
    for alias, field in cls.KEY_ALIASES.items():
        if alias in section:
            section[field] = section.pop(alias)
    own = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in section.items() if k in own}
