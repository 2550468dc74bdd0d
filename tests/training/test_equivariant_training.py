"""`equijax train` with model.name=equivariant: config errors name the key; a short run on uniform
EMT cells (one padded shape) trains, evaluates and checkpoints with finite metrics.

How well the equivariant model learns is not checked here (a 36-step run stays at the zero-force
baseline); that belongs to the layer-comparison experiments of the Facet issue."""

import json
import math

import pytest
from trainutil import uniform_emt_structures

from equijax.data import write_extxyz
from equijax.training.config import ConfigError, load_config
from equijax.training.loop import train


def test_bad_equivariant_choice_names_the_key():
    with pytest.raises(ConfigError, match="model.tp"):
        load_config("equivariant_emt_small", ["model.tp=bogus"])


@pytest.mark.parametrize("tp", ["gaunt_grid"])
def test_equivariant_model_trains(tmp_path, tp):
    """With direct force/stress heads (no second derivatives: the cheap training path)."""
    data = tmp_path / "uniform.extxyz"
    write_extxyz(uniform_emt_structures(24), data)
    config = load_config(
        "equivariant_emt_small",
        [
            f"data.source={data}",
            "data.n_structures=24",
            "data.batch_size=4",
            "data.fractions=[0.67,0.165,0.165]",
            "model.channels=4",
            "model.num_layers=1",
            "model.atom_graph_cutoff=4.0",
            f"model.tp={tp}",
            "model.lmax=1",
            "model.forces=direct",
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
    assert (
        json.loads((tmp_path / "run" / "config.json").read_text())["model"]["name"] == "equivariant"
    )
    assert any((tmp_path / "run").rglob("*checkpoint*")) or any((tmp_path / "run").iterdir())
