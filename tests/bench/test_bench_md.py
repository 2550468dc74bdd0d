"""`equijax bench md`: both calculators run ASE MD in their own processes on the same cell, and
their first energies agree (PyTorch chgnet is the independent reference)."""

import json

import pytest

from equijax.cli import main


def test_bench_md_runs_both_calculators_on_the_same_potential(tmp_path, capsys):
    out = tmp_path / "md.json"
    argv = ["bench", "md", "--atoms", "32", "--steps", "2", "--warmup", "1"]
    assert main([*argv, "--dynamics", "nve", "--out", str(out)]) == 0
    [row] = json.loads(out.read_text())["rows"]
    assert row["atoms"] == 32 and row["dynamics"] == "nve"
    for name in ("equijax", "chgnet"):
        assert row[name]["steps_per_s"] > 0 and row[name]["peak_rss_gb"] > 0, row[name]
        low, median, high = row[name]["step_ms_min_median_max"]
        assert 0 < low <= median <= high
        assert row[name]["steps_per_s"] == pytest.approx(1e3 / median)
    assert row["chgnet"]["compiles_in_timed_steps"] == 0  # torch compiles nothing
    assert row["first_energy_difference_eV_per_atom"] < 1e-4
    assert "equijax bench md" in capsys.readouterr().out


def test_bench_md_rejects_unknown_dynamics():
    with pytest.raises(SystemExit, match="nve,nvt"):
        main(["bench", "md", "--dynamics", "npt"])


def test_cu_cell_has_exactly_the_atoms_asked_for():
    from equijax.bench.md import cu_cell

    for n in (32, 64, 512):
        assert len(cu_cell(n)) == n
    with pytest.raises(ValueError, match="multiple of 4"):
        cu_cell(30)
