"""`equijax bench model`: an equivariant config against its e3nn-jax twin in the same run. With
tp=cg the two are the same function: equal parameter counts and equal energies (e3nn-jax's
``tensor_product`` is the independent reference)."""

import json
import sys
from pathlib import Path

import pytest

from equijax.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
pytestmark = pytest.mark.usefixtures("fast_compiles")


def test_bench_model_cg_equals_e3nn_baseline(tmp_path, capsys):
    from trainutil import uniform_emt_structures

    from equijax.data import write_extxyz

    data = tmp_path / "uniform.extxyz"
    write_extxyz(uniform_emt_structures(8), data)
    out = tmp_path / "model.json"
    assert (
        main(
            [
                "bench",
                "model",
                "--config",
                "equivariant_emt_small",
                "--limit",
                "8",
                "--batch-size",
                "4",
                "--repeats",
                "1",
                "--out",
                str(out),
                f"data.source={data}",
                "model.tp=cg",
                "model.channels=4",
                "model.lmax=1",
                "model.num_layers=1",
                "model.atom_graph_cutoff=4.0",
                "model.forces=direct",
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    ours, base = result["equijax"], result["e3nn_baseline"]
    assert ours["num_params"] == base["num_params"] > 0
    assert result["max_energy_difference_eV"] < 1e-4
    for r in (ours, base):
        assert r["infer_atom_steps_per_s"] > 0 and r["train_structures_per_s"] > 0
    assert "e3nn-jax tensor_product" in capsys.readouterr().out


def test_bench_model_refuses_chgnet_configs_and_unknown_kinds():
    with pytest.raises(SystemExit, match="tensor-product kind"):
        main(["bench", "model", "--config", "chgnet_emt_small"])
    with pytest.raises(SystemExit, match="unknown tensor-product kind"):
        main(["bench", "model", "--config", "nequip_emt_small", "--tps", "cg,gaunt"])
