"""`method="auto"` picks the fastest method of its measured table (`equijax.nn.tp.tuning`)."""

from __future__ import annotations

import itertools
import json

import pytest

from equijax.nn.tp import gaunt_grid, s2grid, tuning


def _groups(rows):
    key = lambda r: (r["kind"], r["L"], r["channels"], r["channels2"], r["batch"], r["pass"])
    for k, group in itertools.groupby(sorted(rows, key=key), key=key):
        yield k, list(group)


def test_packaged_cpu_table_exists_and_covers_the_bench_workload():
    _, packaged = tuning.tables("cpu")
    shapes = {(r["L"], r["channels"], r["pass"]) for r in packaged}
    assert {(lmax, 16, p) for lmax in range(1, 7) for p in tuning.PASSES} <= shapes


def test_auto_picks_the_fastest_method_of_every_packaged_row(monkeypatch, tmp_path):
    monkeypatch.setenv("EQUIJAX_CACHE", str(tmp_path))  # no user table: the packaged one
    monkeypatch.setattr(tuning.jax, "default_backend", lambda: "cpu")
    tuning.tables.cache_clear()
    _, packaged = tuning.tables("cpu")
    checked = 0
    try:
        for (_, lmax, channels, channels2, batch, pass_), group in _groups(packaged):
            if pass_ == "bwdbwd":
                continue  # auto tells undifferentiated from differentiated calls only
            want = min(group, key=lambda r: r["ms"])["method"]
            res = s2grid.resolution_for_degree(3 * lmax)
            got = gaunt_grid.choose_method(
                "auto", channels, channels2, lmax, lmax, res, lmax2=lmax, batch=batch, pass_=pass_
            )
            assert got == want, (lmax, channels, pass_, group)
            checked += 1
    finally:
        tuning.tables.cache_clear()
    assert checked >= 12


def test_nearest_shape_and_user_table_first(monkeypatch, tmp_path):
    rows = [
        {
            "kind": "gaunt_grid",
            "L": 2,
            "channels": c,
            "channels2": 1,
            "batch": 1000,
            "pass": "fwd",
            "method": m,
            "ms": ms,
        }
        for c, m, ms in [(8, "grid", 1.0), (8, "dense", 2.0), (64, "grid", 2.0), (64, "dense", 1.0)]
    ]
    monkeypatch.setenv("EQUIJAX_CACHE", str(tmp_path))
    tuning.write_table(rows, tuning.user_table_path("cpu"))
    try:
        pick = lambda c: tuning.fastest("gaunt_grid", 2, c, 1, 500, "fwd", ("grid", "dense"), "cpu")
        assert pick(10) == "grid" and pick(48) == "dense"
        # a method the caller cannot use is never picked; a shape never measured gives None
        assert tuning.fastest("gaunt_grid", 2, 64, 1, 1000, "fwd", ("grid",), "cpu") == "grid"
        assert tuning.fastest("gaunt_grid", 9, 16, 1, 1000, "fwd", ("grid",), "cpu") is None
    finally:
        tuning.tables.cache_clear()


def test_bad_table_and_pass_are_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("EQUIJAX_CACHE", str(tmp_path))
    tuning.user_table_path("cpu").write_text(json.dumps({"rows": [{"kind": "gaunt_grid"}]}))
    tuning.tables.cache_clear()
    try:
        with pytest.raises(ValueError, match="lacks"):
            tuning.tables("cpu")
    finally:
        tuning.tables.cache_clear()
    with pytest.raises(ValueError, match="pass"):
        tuning.fastest_in([], "gaunt_grid", 1, 1, 1, 1, "backward", ("grid",))
