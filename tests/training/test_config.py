"""Typed training configs: defaults, YAML + ``key=value`` overrides, and errors that name the key."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from equijax.models import registry
from equijax.models.chgnet import CHGNetConfig
from equijax.training.config import (
    ConfigError,
    DataConfig,
    ExperimentConfig,
    LossConfig,
    ModelSpec,
    OptimConfig,
    TrainConfig,
    load_config,
    stage_two_start_step,
    to_dict,
)


def test_defaults_equal_the_dataclass_defaults():
    """`load_config()` with no file and no overrides is exactly the dataclasses' defaults."""
    config = load_config()
    assert isinstance(config, ExperimentConfig)
    assert config == ExperimentConfig()
    assert config.model.name == "chgnet" and config.model.config == CHGNetConfig()
    assert type(config.model) is ModelSpec
    for section, cls in (
        ("data", DataConfig),
        ("loss", LossConfig),
        ("optim", OptimConfig),
        ("train", TrainConfig),
    ):
        assert type(getattr(config, section)) is cls
        assert getattr(config, section) == cls()


def test_yaml_then_overrides(tmp_path):
    """A YAML file overrides the defaults and ``key=value`` overrides the YAML, typed."""
    path = tmp_path / "exp.yaml"
    path.write_text(
        "name: mine\nmodel:\n  hidden_dim: 12\n  mlp_hidden_dims: [5, 6]\n"
        "data:\n  batch_size: 7\n  fractions: [0.5, 0.25, 0.25]\n"
        "optim:\n  learning_rate: 0.003\n"
    )
    config = load_config(
        path,
        [
            "data.batch_size=9",
            "model.mlp_hidden_dims=[8]",
            "train.max_steps=5",
            "loss.kind=mse",
            "train.progress=false",
        ],
    )
    want = ExperimentConfig()
    want.name = "mine"
    want.model = ModelSpec("chgnet", CHGNetConfig(hidden_dim=12, mlp_hidden_dims=(8,)))
    want.data.batch_size = 9
    want.data.fractions = [0.5, 0.25, 0.25]
    want.optim.learning_rate = 0.003
    want.train.max_steps = 5
    want.loss.kind = "mse"
    want.train.progress = False
    assert config == want
    assert isinstance(config.data.batch_size, int) and isinstance(config.optim.learning_rate, float)
    assert load_config(path, ["train.max_steps=null"]).train.max_steps is None
    assert to_dict(config) == {
        "name": "mine",
        "model": want.model.to_dict(),
        **{
            k: dataclasses.asdict(getattr(want, k))
            for k in ("data", "loss", "optim", "train", "log")
        },
    }
    assert load_config(None, [f"{k}={v}" for k, v in _dotted(to_dict(config))]) == config


def _dotted(tree: dict, prefix: str = ""):
    """(dotted key, YAML value) of every leaf of a nested dict."""
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _dotted(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", json.dumps(value)


def _compose_by_hand(experiment: str, selections: dict | None = None) -> dict:
    """Independent reference of Hydra's composition: each group YAML of the ``defaults`` list
    (or of ``selections``) placed under its group key, then the experiment's own keys on top."""
    from importlib import resources

    root = resources.files("equijax.configs")
    raw = yaml.safe_load((root / "experiment" / f"{experiment}.yaml").read_text())
    chosen = {
        k: v
        for entry in raw.pop("defaults", [])
        if isinstance(entry, dict)
        for k, v in entry.items()
    }
    chosen.update(selections or {})
    out: dict = {g: yaml.safe_load((root / g / f"{o}.yaml").read_text()) for g, o in chosen.items()}
    for section, values in raw.items():
        if isinstance(values, dict):
            out.setdefault(section, {}).update(values)
        else:
            out[section] = values
    return out


@pytest.mark.parametrize(
    "experiment, overrides, selections",
    [
        ("chgnet_emt_small", [], None),
        ("equivariant_emt_small", [], None),
        ("mace_emt_small", [], None),
        (
            "chgnet_emt_small",
            ["model=chgnet_tiny", "train=smoke"],
            {"model": "chgnet_tiny", "train": "smoke"},
        ),
    ],
)
def test_packaged_experiment_config_matches_its_groups(experiment, overrides, selections):
    """A packaged experiment (by name) holds the values of its group YAMLs and its own YAML, with
    ``group=option`` overrides swapping a group; every other key keeps its default."""
    raw = _compose_by_hand(experiment, selections)
    got = to_dict(load_config(experiment, overrides))
    defaults = to_dict(ExperimentConfig())
    # the model section: the model's own defaults, under its fields' names
    model_cls = registry.config_class(raw["model"]["name"])
    raw["model"] = {model_cls.KEY_ALIASES.get(k, k): v for k, v in raw["model"].items()}
    defaults["model"] = ExperimentConfig(model={"name": raw["model"]["name"]}).model.to_dict()
    for section, values in raw.items():
        if isinstance(values, dict):
            for key, value in values.items():
                assert got[section][key] == value, f"{section}.{key}"
            untouched = set(defaults[section]) - set(values)
            if "hidden_dim" in values:  # CHGNet's shorthand sets both convolutions' widths
                untouched -= {"atom_conv_hidden_dim", "bond_conv_hidden_dim"}
            assert {k: got[section][k] for k in untouched} == {
                k: defaults[section][k] for k in untouched
            }
        else:
            assert got[section] == values


def test_user_file_composes_local_and_packaged_groups(tmp_path):
    """A file outside the package finds groups in folders next to it and the packaged ones; its
    ``sweep`` block is not part of the training config."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "mine.yaml").write_text("name: chgnet\nn_conv: 1\nhidden_dim: 4\n")
    path = tmp_path / "exp.yaml"
    path.write_text(
        "defaults:\n  - model: mine\n  - data: emt_tiny\n  - _self_\n"
        "optim:\n  learning_rate: 0.01\nsweep:\n  grid:\n    model.n_conv: [1, 2]\n"
    )
    config = load_config(path, ["model.hidden_dim=6"])
    assert (config.model.config.n_conv, config.model.config.hidden_dim) == (1, 6)
    assert config.model.config.atom_conv_hidden_dim == (6,)
    assert config.data.n_structures == yaml.safe_load(_packaged("data", "emt_tiny"))["n_structures"]
    assert config.optim.learning_rate == 0.01


def _packaged(group: str, option: str) -> str:
    from importlib import resources

    return (resources.files("equijax.configs") / group / f"{option}.yaml").read_text()


def test_unknown_group_option_names_the_group():
    with pytest.raises(ConfigError, match=r"'model'.*no option 'nope'.*chgnet_tiny"):
        load_config("chgnet_emt_small", ["model=nope"])


@pytest.mark.parametrize(
    "override, key",
    [
        ("nope=1", "nope"),
        ("model.nope=1", "model.nope"),
        ("train.nope.deeper=1", "train.nope"),
        ("optim.learning_rat=0.1", "optim.learning_rat"),
    ],
)
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


@pytest.mark.parametrize(
    "override, key",
    [
        ("data.batch_size=abc", "data.batch_size"),
        ("data.batch_size=1.5", "data.batch_size"),
        ("optim.learning_rate=fast", "optim.learning_rate"),
        ("train.progress=maybe", "train.progress"),
        ("data.fractions=abc", "data.fractions"),
        ("model.mlp_hidden_dims=[a]", "model.mlp_hidden_dims"),
    ],
)
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


@pytest.mark.parametrize(
    "override, key",
    [
        ("loss.kind=l1", "loss.kind"),
        ("optim.optimizer=sgd", "optim.optimizer"),
        ("model.name=schnet", "model.name"),
        ("data.batch_size=0", "data.batch_size"),
        ("optim.learning_rate=0", "optim.learning_rate"),
        ("optim.learning_rate=-1e-3", "optim.learning_rate"),
        ("optim.ema_decay=1.0", "optim.ema_decay"),
        ("optim.ema_decay=-0.5", "optim.ema_decay"),
        ("model.forces=automatic", "model.forces"),
        ("model.pretrained=9.9", "model.pretrained"),
        ("model.direct_stress=pairwise", "model.direct_stress"),
        ("train.matmul_precision=fp8", "train.matmul_precision"),
        ("model.direct_stress=virial", "model.direct_stress"),  # without model.forces=direct
        ("train.conservative_every=2", "train.conservative_every"),  # without model.forces=direct
        ("train.conservative_every=-1", "train.conservative_every"),
        ("model.direct_hidden_dims=[64,0]", "model.direct_hidden_dims"),
        ("model.direct_trunk_grad=0.5", "model.direct_trunk_grad"),  # without model.forces=direct
        ("model.direct_angle_stress=true", "model.direct_angle_stress"),  # without forces=direct
        ("model.direct_angle_forces=true", "model.direct_angle_forces"),  # without forces=direct
        ("model.direct_pair_energy=2.5", "model.direct_pair_energy"),
        ("model.direct_stress=virial_only", "model.direct_stress"),  # without model.forces=direct
        ("model.direct_norm=20", "model.direct_norm"),  # without model.forces=direct
        ("loss.stage_two.start=1.5", "loss.stage_two.start"),
        ("loss.stage_two.energy=-1", "loss.stage_two.energy"),
        ("loss.stage_two.start=0.5", "loss.stage_two"),  # starts, but sets no weight
        (
            "loss.stage_two.conservative_every=1",
            "loss.stage_two.conservative_every",
        ),  # conservative
        ("loss.gradient_stress=0.02", "loss.gradient_stress"),  # a conservative model
    ],
)
def test_invalid_values_raise(override, key):
    """Values of the right type but outside the allowed set raise `ConfigError` naming the key."""
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_stage_two_from_yaml_and_its_start_step(tmp_path):
    """``loss.stage_two`` composes from YAML and overrides, and starts at ``round(start * total)``:
    the last quarter of 1200 steps is steps 900-1199; a start of 1 (the default), or one that
    rounds to the last step count, never starts."""
    path = tmp_path / "exp.yaml"
    path.write_text("loss:\n  stage_two:\n    start: 0.75\n    energy: 10.0\n")
    config = load_config(path, ["loss.stage_two.stress=0.5"])
    stage = config.loss.stage_two
    assert (stage.start, stage.energy, stage.forces, stage.stress) == (0.75, 10.0, None, 0.5)
    assert stage_two_start_step(stage, 1200) == 900
    assert stage_two_start_step(stage, 10) == 8  # round(7.5) to even: steps 8 and 9
    assert stage_two_start_step(load_config(None, []).loss.stage_two, 1200) is None
    assert stage_two_start_step(dataclasses.replace(stage, start=0.9999), 100) is None
    # a conservative fine-tuning stage alone is a setting of its own
    tuned = load_config(
        None,
        ["model.forces=direct", "loss.stage_two.start=0.75", "loss.stage_two.conservative_every=1"],
    ).loss.stage_two
    assert tuned.conservative_every == 1 and tuned.energy is None
    with pytest.raises(ConfigError, match="conservative_every'.*integer >= 0"):
        load_config(None, ["model.forces=direct", "loss.stage_two.conservative_every=-2"])


def test_gradient_term_weights_need_conservative_steps():
    """``loss.gradient_forces`` / ``gradient_stress`` are accepted with conservative steps in
    either stage, and refused (naming the key and why) for direct heads without any, or when
    negative or not finite."""
    direct = ["model.forces=direct"]
    for steps in (
        ["train.conservative_every=2"],
        ["loss.stage_two.start=0.5", "loss.stage_two.conservative_every=1"],
    ):
        loss = load_config(
            None, [*direct, *steps, "loss.gradient_stress=0.02", "loss.gradient_forces=0.5"]
        ).loss
        assert (loss.gradient_stress, loss.gradient_forces, loss.stress) == (0.02, 0.5, 0.1)
    for overrides, why in (
        ([*direct, "loss.gradient_forces=1.0"], "gradient_forces'.*conservative_every > 0"),
        (
            [*direct, "loss.stage_two.conservative_every=1", "loss.gradient_stress=0.1"],
            "gradient_stress'.*conservative_every > 0",
        ),  # stage two never starts
        (
            [*direct, "train.conservative_every=2", "loss.gradient_stress=-0.1"],
            "gradient_stress'.*>= 0",
        ),
        (
            [*direct, "train.conservative_every=2", "loss.gradient_forces=.inf"],
            "gradient_forces'.*finite",
        ),
    ):
        with pytest.raises(ConfigError, match=why):
            load_config(None, overrides)


def test_stage_two_log_text_names_what_changes():
    """The log line at the switch names each changed weight and the conservative period."""
    from equijax.training.loop import _stage_two_text

    config = load_config(
        None,
        [
            "model.forces=direct",
            "train.conservative_every=4",
            "loss.stage_two.start=0.75",
            "loss.stage_two.stress=0.5",
            "loss.stage_two.conservative_every=1",
        ],
    )
    assert _stage_two_text(config) == "stress 0.1 -> 0.5, conservative_every 4 -> 1"
    fixed = load_config(
        None,
        [
            "model.forces=direct",
            "train.conservative_every=2",
            "loss.gradient_stress=0.05",
            "loss.stage_two.start=0.75",
            "loss.stage_two.stress=0.5",
        ],
    )
    assert _stage_two_text(fixed) == "stress 0.1 -> 0.5, gradient terms unchanged (stress 0.05)"


@pytest.mark.parametrize(
    "override", ["train.checkpoint_every_steps=0", "train.eval_every_epochs=0"]
)
def test_zero_periods_are_rejected(override):
    """A zero checkpoint or evaluation period is refused at load time with `ConfigError`."""
    with pytest.raises(ConfigError, match=override.split("=")[0].replace(".", r"\.")):
        load_config(None, [override])


def test_pretrained_needs_chgnet():
    with pytest.raises(ConfigError, match=r"model\.pretrained.*chgnet"):
        load_config(None, ["model.name=equivariant", "model.pretrained=0.3.0"])


def test_unknown_frozen_collection_lists_the_valid_ones():
    from equijax.training.model_setup import frozen_collections

    config = load_config(None, ["optim.freeze=[atom_embeding]"])
    params = {"params": {"atom_embedding": 0, "atomref": 0}}
    with pytest.raises(ValueError, match=r"optim\.freeze.*atom_embeding.*atom_embedding"):
        frozen_collections(config, params)
    assert frozen_collections(load_config(None, ["optim.freeze=[atom_embedding]"]), params) == (
        "atomref",
        "atom_embedding",
    )


def test_emulated_precision_for_an_equivariant_model_fails_before_the_data(tmp_path):
    """On CPU, bf16 for the e3nn model is refused by `train` before any data is made (the
    emulation rounds only flax Dense layers)."""
    from equijax.training.loop import train

    config = load_config(
        None,
        [
            "model.name=equivariant",
            "train.matmul_precision=bf16",
            "data.source=/nonexistent/never-read.extxyz",
            f"train.run_dir={tmp_path / 'run'}",
        ],
    )
    with pytest.raises(ValueError, match="does not cover"):
        train(config)
    assert not (tmp_path / "run").exists()


def test_direct_hidden_dims_reach_the_chgnet_config():
    """``model.direct_hidden_dims`` becomes the CHGNet's ``direct_hidden_dims`` (the widths of
    `DirectHeads`' pair MLP)."""
    from equijax.training.model_setup import build_model

    config = load_config(None, ["model.forces=direct", "model.direct_hidden_dims=[12,7]"])
    assert build_model(config.model).config.direct_hidden_dims == (12, 7)
    assert build_model(load_config(None, []).model).config.direct_hidden_dims == (64,)


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["model.direct_norm=0"], "model.direct_norm"),
        (["model.direct_norm=-40"], "model.direct_norm"),
        (["model.direct_norm=inf"], "model.direct_norm"),
        (["model.direct_norm=nan"], "model.direct_norm"),
        (["model.direct_trunk_grad=-0.1"], "model.direct_trunk_grad"),
        (["model.direct_trunk_grad=nan"], "model.direct_trunk_grad"),
        (["model.direct_trunk_grad=inf"], "model.direct_trunk_grad"),
        (["model.name=equivariant", "model.direct_angle_stress=true"], "model.direct_angle_stress"),
        (["model.name=equivariant", "model.direct_angle_forces=true"], "model.direct_angle_forces"),
        (["model.name=equivariant", "model.direct_pair_energy=8"], "model.direct_pair_energy"),
        (["model.direct_pair_energy=-1"], "model.direct_pair_energy"),
        (["model.direct_angle_energy=-1"], "model.direct_angle_energy"),
        (["model.name=equivariant", "model.direct_stress=virial_only"], "model.direct_stress"),
        (["model.name=equivariant", "model.direct_angle_energy=4"], "model.direct_angle_energy"),
        (["model.name=equivariant", "model.direct_trunk_grad=0.1"], "model.direct_trunk_grad"),
    ],
)
def test_invalid_direct_head_options_raise(overrides, key):
    """Out-of-range values of the direct heads' options, or options the model does not have,
    raise `ConfigError` naming the key (each case with ``model.forces=direct``, so that only the
    named rule can fail)."""
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, ["model.forces=direct", *overrides])


@pytest.mark.parametrize("pretrained", [None, "0.3.0"])
def test_direct_head_options_reach_the_models(pretrained):
    """``model.direct_norm``, ``direct_angle_stress``, ``direct_trunk_grad``,
    ``direct_hidden_dims``, ``direct_angle_forces``, ``direct_stress``, ``direct_pair_energy``
    and ``direct_angle_energy`` become the CHGNet's config fields, for a fresh and a pretrained
    CHGNet; ``direct_norm`` also the equivariant model's. Without them the heads are plain."""
    from equijax.training.model_setup import build_model

    base = [f"model.pretrained={pretrained}"] if pretrained else []
    config = load_config(
        None,
        [
            *base,
            "model.forces=direct",
            "model.direct_norm=32",
            "model.direct_angle_stress=true",
            "model.direct_trunk_grad=0.1",
            "model.direct_hidden_dims=[16]",
            "model.direct_angle_forces=true",
            "model.direct_stress=virial_only",
            "model.direct_pair_energy=6",
            "model.direct_angle_energy=3",
        ],
    ).model
    built = build_model(config).config
    assert (
        built.direct_norm,
        built.direct_angle_stress,
        built.direct_trunk_grad,
        built.direct_hidden_dims,
        built.direct_angle_forces,
        built.direct_stress,
        built.direct_pair_energy,
        built.direct_angle_energy,
    ) == (32.0, True, 0.1, (16,), True, "virial_only", 6, 3)
    plain = build_model(load_config(None, base).model).config
    assert (
        plain.direct_norm,
        plain.direct_angle_stress,
        plain.direct_trunk_grad,
        plain.direct_angle_forces,
        plain.direct_stress,
    ) == (1.0, False, 1.0, False, "independent")
    equivariant = load_config(
        None, ["model.name=equivariant", "model.forces=direct", "model.direct_norm=32"]
    ).model
    assert build_model(equivariant).config.direct_norm == 32.0


def test_remat_with_conservative_steps_warns_and_either_alone_does_not():
    """remat recomputes the direct blocks inside the conservative steps' second derivative (more
    memory, measured in experiments/chgnet_train_bench/cpu_remat_call_conservative_b4.json)."""
    import warnings

    with pytest.warns(UserWarning, match="model.remat with train.conservative_every"):
        load_config(None, ["model.forces=direct", "model.remat=true", "train.conservative_every=4"])
    tuned = ["model.forces=direct", "model.remat=true", "loss.stage_two.conservative_every=1"]
    with pytest.warns(UserWarning, match="model.remat with loss.stage_two.conservative_every"):
        load_config(None, [*tuned, "loss.stage_two.start=0.75"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_config(None, ["model.forces=direct", "model.remat=true"])
        load_config(None, ["model.forces=direct", "train.conservative_every=4"])
        load_config(None, tuned)  # stage two never starts


def test_older_key_names_override_across_layers(tmp_path):
    """A model's older key names (``KEY_ALIASES``) and its fields' names override each other
    from any layer: the packaged group sets ``cutoff``, an override ``atom_graph_cutoff``."""
    config = load_config(
        "equivariant_emt_small", ["model.atom_graph_cutoff=4.0", "model.spline_basis=5"]
    )
    assert (config.model.config.cutoff, config.model.config.num_radial) == (4.0, 5)
    path = tmp_path / "old.yaml"
    path.write_text("model:\n  name: equivariant\n  spline_basis: 6\n")
    assert load_config(path, ["model.num_radial=7"]).model.config.num_radial == 7
    path.write_text("model:\n  name: equivariant\n  spline_basis: 6\n  num_radial: 7\n")
    with pytest.raises(ConfigError, match="model.spline_basis.*set only one"):
        load_config(path)
