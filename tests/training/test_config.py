"""Typed training configs: defaults, YAML + ``key=value`` overrides, and errors that name the key."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from equijax.training.config import (
    ConfigError,
    DataConfig,
    ExperimentConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    load_config,
    to_dict,
)


def test_defaults_equal_the_dataclass_defaults():
    """`load_config()` with no file and no overrides is exactly the dataclasses' defaults."""
    config = load_config()
    assert isinstance(config, ExperimentConfig)
    assert config == ExperimentConfig()
    for section, cls in (("model", ModelConfig), ("data", DataConfig), ("loss", LossConfig),
                         ("optim", OptimConfig), ("train", TrainConfig)):
        assert type(getattr(config, section)) is cls
        assert getattr(config, section) == cls()


def test_yaml_then_overrides(tmp_path):
    """A YAML file overrides the defaults and ``key=value`` overrides the YAML, typed."""
    path = tmp_path / "exp.yaml"
    path.write_text("name: mine\nmodel:\n  hidden_dim: 12\n  mlp_hidden_dims: [5, 6]\n"
                    "data:\n  batch_size: 7\n  fractions: [0.5, 0.25, 0.25]\n"
                    "optim:\n  learning_rate: 0.003\n")
    config = load_config(path, ["data.batch_size=9", "model.mlp_hidden_dims=[8]",
                                "train.max_steps=5", "loss.kind=mse", "train.progress=false"])
    want = ExperimentConfig()
    want.name = "mine"
    want.model.hidden_dim = 12
    want.model.mlp_hidden_dims = [8]
    want.data.batch_size = 9
    want.data.fractions = [0.5, 0.25, 0.25]
    want.optim.learning_rate = 0.003
    want.train.max_steps = 5
    want.loss.kind = "mse"
    want.train.progress = False
    assert config == want
    assert isinstance(config.data.batch_size, int) and isinstance(config.optim.learning_rate, float)
    assert load_config(path, ["train.max_steps=null"]).train.max_steps is None
    assert to_dict(config) == dataclasses.asdict(want)


def test_packaged_experiment_config_matches_its_yaml():
    """The packaged ``chgnet_emt_small`` config (by name) holds the values of its YAML file."""
    from importlib import resources

    text = (resources.files("equijax.configs") / "experiment" / "chgnet_emt_small.yaml").read_text()
    raw = yaml.safe_load(text)
    got = to_dict(load_config("chgnet_emt_small"))
    defaults = to_dict(ExperimentConfig())
    for section, values in raw.items():
        if isinstance(values, dict):
            for key, value in values.items():
                assert got[section][key] == value, f"{section}.{key}"
            untouched = set(defaults[section]) - set(values)
            assert {k: got[section][k] for k in untouched} == {k: defaults[section][k] for k in untouched}
        else:
            assert got[section] == values


@pytest.mark.parametrize("override, key", [
    ("nope=1", "nope"),
    ("model.nope=1", "model.nope"),
    ("train.nope.deeper=1", "train.nope"),
    ("optim.learning_rat=0.1", "optim.learning_rat"),
])
def test_unknown_override_key_names_it(override, key):
    """An unknown top-level or nested override key raises `ConfigError` naming the key."""
    with pytest.raises(ConfigError, match=rf"'{key}'"):
        load_config(None, [override])


def test_unknown_yaml_key_names_it(tmp_path):
    """An unknown key inside a YAML section raises `ConfigError` naming the dotted key."""
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  batch_size: 4\n  nope: 1\n")
    with pytest.raises(ConfigError, match=r"'data\.nope'"):
        load_config(path)


@pytest.mark.parametrize("override, key", [
    ("data.batch_size=abc", "data.batch_size"),
    ("data.batch_size=1.5", "data.batch_size"),
    ("optim.learning_rate=fast", "optim.learning_rate"),
    ("train.progress=maybe", "train.progress"),
    ("data.fractions=abc", "data.fractions"),
    ("model.mlp_hidden_dims=[a]", "model.mlp_hidden_dims"),
])
def test_wrong_type_names_the_key(override, key):
    """A value of the wrong type raises `ConfigError` naming the key."""
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_wrong_type_in_yaml_names_the_key(tmp_path):
    """A wrongly typed YAML value raises `ConfigError` naming the key."""
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  batch_size: abc\n")
    with pytest.raises(ConfigError, match=r"'data\.batch_size'"):
        load_config(path)


def test_scalar_for_a_section_names_the_key():
    """Giving a whole section a scalar (``model=3``) raises `ConfigError` naming ``model``."""
    with pytest.raises(ConfigError, match=r"'model'"):
        load_config(None, ["model=3"])


@pytest.mark.parametrize("override, key", [
    ("loss.kind=l1", "loss.kind"),
    ("optim.optimizer=sgd", "optim.optimizer"),
    ("model.name=schnet", "model.name"),
    ("data.batch_size=0", "data.batch_size"),
    ("optim.learning_rate=0", "optim.learning_rate"),
    ("optim.learning_rate=-1e-3", "optim.learning_rate"),
    ("optim.ema_decay=1.0", "optim.ema_decay"),
    ("optim.ema_decay=-0.5", "optim.ema_decay"),
])
def test_invalid_values_raise(override, key):
    """Values of the right type but outside the allowed set raise `ConfigError` naming the key."""
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


@pytest.mark.parametrize("override", ["train.checkpoint_every_steps=0",
                                      "train.eval_every_epochs=0"])
def test_zero_periods_are_rejected(override):
    """A zero checkpoint or evaluation period is refused at load time with `ConfigError`."""
    with pytest.raises(ConfigError, match=override.split("=")[0].replace(".", r"\.")):
        load_config(None, [override])
