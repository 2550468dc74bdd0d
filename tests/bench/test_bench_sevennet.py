"""`equijax bench sevennet` end to end (small): both sides run, the energies agree, JSON written."""

import json

import pytest

from equijax.cli import main

pytestmark = pytest.mark.usefixtures("fast_compiles")


def test_sevennet_bench_runs_both_sides(tmp_path):
    out = tmp_path / "sevennet.json"
    args = ["bench", "sevennet", "--modes", "md,infer", "--md-atoms", "4", "--batch-size", "2"]
    assert main([*args, "--steps", "1", "--out", str(out)]) == 0
    rows = {r["mode"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"md", "infer"}
    assert all(
        r["equijax_s"] > 0 and r["reference_s"] > 0 and r["speedup"] > 0 for r in rows.values()
    )
    assert rows["infer"]["max_energy_diff_ev_per_atom"] < 2e-5


def test_sevennet_bench_refuses_unknown_modes():
    with pytest.raises(SystemExit, match="subset of md,infer,train"):
        main(["bench", "sevennet", "--modes", "md,fly"])
