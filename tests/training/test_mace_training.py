"""`equijax train` with model.name=mace: a bad choice names the key; a short run of a tiny MACE
(conservative forces, so the step differentiates twice, with the sphere-grid contraction) trains,
evaluates and checkpoints with finite metrics. How well MACE learns is the Price-of-Freedom
experiment's question (experiments/mace)."""

import json
import math

import pytest
from trainutil import uniform_emt_structures

from equijax.data import write_extxyz
from equijax.training.config import ConfigError, load_config
from equijax.training.loop import train


def test_bad_mace_choice_names_the_key():
    with pytest.raises(ConfigError, match="model.contraction"):
        load_config("mace_emt_small", ["model.contraction=bogus"])


def test_mace_trains(tmp_path):
    data = tmp_path / "uniform.extxyz"
    write_extxyz(uniform_emt_structures(24), data)
    config = load_config(
        "mace_emt_small",
        [
            f"data.source={data}",
            "data.n_structures=24",
            "data.batch_size=4",
            "data.fractions=[0.67,0.165,0.165]",
            "model.hidden_irreps=4x0e+4x1o",
            "model.max_ell=1",
            "model.correlation=[2]",
            "model.radial_mlp=[8]",
            "model.r_max=4.0",
            "model.contraction=gaunt_grid",
            "train.epochs=6",
            "train.eval_every_epochs=6",
            "optim.warmup_steps=2",
            f"train.run_dir={tmp_path / 'run'}",
            "train.progress=false",
        ],
    )
    result = train(config)
    rows = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert result["steps"] >= 20 and len(losses) >= result["steps"]
    assert all(math.isfinite(v) for v in losses)
    assert all(math.isfinite(v) for v in result["val"].values())
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["model"]
    assert saved["name"] == "mace" and saved["contraction"] == "gaunt_grid"
