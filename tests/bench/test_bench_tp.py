"""`equijax bench tp` end to end at a tiny size: every method runs, same-function methods agree
with their e3nn-jax reference in the run, and the reported paths are `tp.paths`' (checked by
counting nonzero output blocks in tests/nn/tp)."""

import json

import e3nn_jax as e3nn

from equijax.bench import tp_methods
from equijax.cli import main
from equijax.nn import tp


def test_bench_tp_reports_every_method_and_agreement(tmp_path):
    out, png = tmp_path / "tp.json", tmp_path / "tp.png"
    assert (
        main(
            [
                "bench",
                "tp",
                "--lmax",
                "1",
                "--batch",
                "8",
                "--channels",
                "2",
                "--repeats",
                "1",
                "--cue-lmax",
                "1",
                "--modes",
                "fwd",
                "--out",
                str(out),
                "--plot",
                str(png),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    rows = {r["method"]: r for r in result["rows"]}
    expected = set(tp_methods.EQUIJAX_METHODS) | {"e3nn_cg", "e3nn_s2grid", "cue_naive"}
    assert expected <= set(rows), f"missing rows: {expected - set(rows)}"
    for name in expected:
        row = rows[name]
        assert not any(k.endswith("error") for k in row), row
        assert row["fwd_ms"] > 0 and row["fwd_compile_s"] > 0 and row["fwd_peak_mb"] > 0
        assert 0 < row["fraction_of_bandwidth"] and 0 < row["fraction_of_matmul"]
    # the path counts the harness reports are the expressivity report of each kind
    ir1, ir2 = tp_methods.irreps_upto(1, 2), tp_methods.irreps_upto(1)
    keep = [e3nn.Irrep(l, p) for l in (0, 1) for p in (1, -1)]
    assert rows["cg"]["paths"] == len(tp.paths("cg", ir1, ir2, keep)) == rows["e3nn_cg"]["paths"]
    assert rows["gaunt_grid"]["paths"] == len(tp.paths("gaunt_grid", ir1, ir2, keep))
    assert rows["vector_gaunt"]["odd_paths"] > 0 and rows["gaunt_grid"]["odd_paths"] == 0
    # in-run agreement with e3nn-jax (float32)
    agree = {
        (a["method"], a["reference"]): a["max_relative_difference"] for a in result["agreement"]
    }
    assert set(agree) >= {
        ("gaunt_grid", "e3nn_s2grid"),
        ("gaunt_fourier", "e3nn_s2grid"),
        ("cg", "e3nn_cg"),
    }
    assert max(agree.values()) < 1e-5
    assert {e["reference"] for e in result["ratios"]} >= {"e3nn_s2grid", "e3nn_cg"}
    assert png.stat().st_size > 0
    assert result["machine"]["summary"]


def test_bench_tp_backward_modes(tmp_path):
    """Forward+backward and backward-of-backward are timed and compared with the reference."""
    out = tmp_path / "tp.json"
    assert (
        main(
            [
                "bench",
                "tp",
                "--lmax",
                "1",
                "--batch",
                "8",
                "--channels",
                "2",
                "--repeats",
                "1",
                "--methods",
                "gaunt_grid,e3nn_s2grid",
                "--modes",
                "fwdbwd,bwdbwd",
                "--out",
                str(out),
                "--plot",
                "",
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    for row in result["rows"]:
        assert row["fwdbwd_ms"] > 0 and row["bwdbwd_ms"] > 0 and row["bwdbwd_peak_mb"] > 0
    [ratio] = result["ratios"]
    assert ratio["fwdbwd_speedup"] > 0 and ratio["bwdbwd_speedup"] > 0


def test_bench_tp_rejects_unknown_method(capsys):
    import pytest

    with pytest.raises(SystemExit, match="unknown method"):
        main(["bench", "tp", "--methods", "cg,nope", "--out", ""])


def test_bench_tp_tune_writes_the_table_auto_reads(tmp_path, monkeypatch):
    """`--tune` times every gaunt_grid method in every pass; with the table in the user's cache,
    method="auto" picks the fastest row it wrote."""
    from equijax.nn.tp import gaunt_grid, s2grid, tuning

    monkeypatch.setenv("EQUIJAX_CACHE", str(tmp_path))
    tuning.tables.cache_clear()
    try:
        assert (
            main(
                [
                    "bench",
                    "tp",
                    "--tune",
                    "--lmax",
                    "1",
                    "--batch",
                    "8",
                    "--channels",
                    "2",
                    "--repeats",
                    "1",
                ]
            )
            == 0
        )
        rows = json.loads(tuning.user_table_path().read_text())["rows"]
        assert {(r["method"], r["pass"]) for r in rows} == {
            (m, p) for m in ("grid", "operator", "dense") for p in tuning.PASSES
        }
        fwd = [r for r in rows if r["pass"] == "fwd"]
        want = min(fwd, key=lambda r: r["ms"])["method"]
        res = s2grid.resolution_for_degree(3)
        assert gaunt_grid.choose_method("auto", 2, 1, 1, 1, res, batch=8) == want
    finally:
        tuning.tables.cache_clear()
