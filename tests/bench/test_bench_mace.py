"""`equijax bench mace` end to end (small model, tiny inputs): equijax and mace-torch both run
every mode on the same weights, their energies agree, the JSON has every row."""

import json

import numpy as np
import pytest

from equijax.cli import main

pytestmark = pytest.mark.usefixtures("fast_compiles")


def test_mace_bench_runs_both_sides(tmp_path):
    out = tmp_path / "mace.json"
    args = ["bench", "mace", "--size", "small", "--md-atoms", "4", "--batch-size", "2"]
    assert main([*args, "--steps", "1", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    rows = {r["mode"]: r for r in results["rows"]}
    assert set(rows) == {"md", "infer", "train"}
    for row in rows.values():
        for key in ("equijax_s", "reference_s", "speedup"):
            assert np.isfinite(row[key]) and row[key] > 0, (row["mode"], key)
    # the same weights in both (E0s zero): energies (eV/atom) and forces agree to float32 rounding
    for mode in ("md", "infer"):
        assert rows[mode]["max_energy_diff_ev_per_atom"] < 1e-5, mode
        assert rows[mode]["max_force_ev_per_a"] > 0, mode
        assert rows[mode]["max_force_diff_ev_per_a"] < 1e-3 * rows[mode]["max_force_ev_per_a"]
    assert results["hidden_irreps"] == "32x0e+32x1o"
    assert 29 in results["atomic_numbers"]
    assert results["mlip"].startswith("not run in this process")


def test_mace_bench_refuses_unknown_modes():
    with pytest.raises(SystemExit, match="subset of md,infer,train"):
        main(["bench", "mace", "--only", "md,fly"])
