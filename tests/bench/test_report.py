"""`equijax bench report`: the committed Benchmarks page equals what the committed bench JSONs
give, the extractors read the numbers the JSONs hold, and ``--check`` fails on a doctored page."""

import datetime
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from equijax.bench import report
from equijax.bench import report_extract as ex
from equijax.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _in_git_checkout() -> bool:
    if shutil.which("git") is None:
        return False
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--is-inside-work-tree"], capture_output=True
    )
    return done.returncode == 0


# the dates on the page come from git (the JSONs carry none): without a checkout they read
# "unknown" and the page cannot match
needs_git = pytest.mark.skipif(not _in_git_checkout(), reason="not a git checkout")


def _raw(path: str) -> dict:
    return json.loads((ROOT / path).read_text())


def _bench(key: str) -> report.Benchmark:
    return next(b for b in report.BENCHMARKS if b.key == key)


def _rows(key: str) -> list[ex.Row]:
    b = _bench(key)
    return b.extract(_raw(b.json))[0]


@needs_git
def test_committed_page_matches_the_jsons():
    problem = report.check(ROOT)
    assert problem is None, problem


def test_every_declared_json_exists_and_has_rows():
    for b in report.BENCHMARKS:
        assert (ROOT / b.json).is_file(), b.json
        assert _rows(b.key), b.key
    assert len({b.key for b in report.BENCHMARKS}) == len(report.BENCHMARKS)


def test_extractors_agree_with_the_speedups_the_benches_stored():
    approx = pytest.approx
    for key in ("graphs", "chgnet-infer", "chgnet-train"):
        (row,) = _rows(key)
        assert row.ratio == approx(_raw(_bench(key).json)["speedup_vs_chgnet"])

    d = _raw(_bench("chgnet-train-memory").json)
    rows = _rows("chgnet-train-memory")
    speed = [r for r in rows if r.kind == "speed"]
    memory = [r for r in rows if r.kind == "memory"]
    suffixes = ["", "_direct", "_remat", "_direct_remat"]
    assert [r.ratio for r in speed] == approx([d[f"speedup_vs_chgnet{s}"] for s in suffixes])
    assert [r.equijax for r in memory] == [d[f"equijax{s}"]["step_rss_growth_MB"] for s in suffixes]
    assert {r.reference for r in memory} == {d["chgnet"]["step_rss_growth_MB"]}

    for key in ("sevennet", "mace"):
        raw = _raw(_bench(key).json)["rows"]
        assert [r.ratio for r in _rows(key)] == approx([r["speedup"] for r in raw])
        assert [r.equijax for r in _rows(key)] == [r["equijax_s"] for r in raw]

    mlip = _raw(_bench("mlip").json)["summary"]
    assert [r.ratio for r in _rows("mlip")] == approx([s["mlip_over_equijax"] for s in mlip])

    for key in ("tp-gaunt", "tp-cg"):
        d = _raw(_bench(key).json)
        got = {(r.what, r.against): r.ratio for r in _rows(key)}
        for q in d["ratios"]:
            if key == "tp-gaunt" and q["method"] != "gaunt_grid":
                continue
            for mode, label in ex.TP_MODES.items():
                what = f"{q['method']}, L={q['L']}, {label}"
                assert got[(what, q["reference"])] == approx(q[f"{mode}_speedup"]), what


def test_md_and_quality_rows_read_the_raw_numbers():
    d = _raw(_bench("md").json)
    speed = [r for r in _rows("md") if r.unit == "steps/s"]
    assert [r.equijax for r in speed] == [r["equijax"]["steps_per_s"] for r in d["rows"]]
    assert [r.reference for r in speed] == [r["chgnet"].get("steps_per_s") for r in d["rows"]]
    for row, raw in zip(speed, d["rows"], strict=True):
        ref = raw["chgnet"].get("steps_per_s")
        assert row.ratio == (pytest.approx(raw["equijax"]["steps_per_s"] / ref) if ref else None)

    d = _raw(_bench("emt-training").json)
    energy, forces, stress = _rows("emt-training")
    assert energy.ratio == pytest.approx(
        d["baseline_val"]["energy_mae_per_atom"] / d["val"]["mae_energy"]
    )
    assert forces.ratio == pytest.approx(
        d["baseline_val"]["force_mae_zero"] / d["val"]["mae_forces"]
    )
    assert stress.equijax == d["val"]["mae_stress"]


def test_page_tables_show_each_ratio():
    page = (ROOT / report.PAGE).read_text()
    for b in report.BENCHMARKS:
        assert f"`{b.json}`" in page
        for row in b.extract(_raw(b.json))[0]:
            assert report.times(row.ratio) in page


def _run(*argv: str) -> int:
    args = build_parser().parse_args(["bench", "report", *argv])
    return args.func(args)


@needs_git
def test_check_fails_on_a_doctored_page(tmp_path, capsys):
    # the page and chart where the page's image link finds the chart, as in docs/
    page, chart = tmp_path / "benchmarks.md", tmp_path / "img" / "ratios.png"
    text = (ROOT / report.PAGE).read_text().replace("img/benchmark_ratios.png", "img/ratios.png")
    page.write_text(text)
    assert _run("--check", "--root", str(ROOT), "--page", str(page), "--chart", str(chart)) == 0

    ratio = report.times(_rows("chgnet-infer")[0].ratio)
    page.write_text(text.replace(f"| {ratio} |", "| 9.99x |", 1))
    with pytest.raises(SystemExit) as stop:
        _run("--check", "--root", str(ROOT), "--page", str(page), "--chart", str(chart))
    message = str(stop.value.code)
    assert "\n" not in message and "differs from the bench JSONs" in message
    assert "equijax bench report" in message

    # writing puts the JSONs' numbers back and draws the chart
    assert _run("--root", str(ROOT), "--page", str(page), "--chart", str(chart)) == 0
    assert page.read_text() == text
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_json_is_one_line_naming_it(tmp_path):
    gone = report.Benchmark("x", "X", "x", "experiments/nope/bench.json", "equijax bench x", ex.md)
    with pytest.raises(report.ReportError, match="experiments/nope/bench.json"):
        report.load(gone, ROOT)
    (tmp_path / "bad.json").write_text(json.dumps({"rows": [{"atoms": 1}]}))
    bad = report.Benchmark("x", "X", "x", "bad.json", "equijax bench x", ex.md)
    with pytest.raises(report.ReportError, match="bad.json does not fit"):
        report.load(bad, tmp_path)
    with pytest.raises(SystemExit, match="page not found"):
        _run("--check", "--root", str(tmp_path), "--page", "nope.md")


def test_blocks_are_replaced_appended_or_refused():
    text = (
        "# T\n\nprose\n\n<!-- generated:begin a -->\nold\n<!-- generated:end a -->\n\nmore prose\n"
    )
    new = report.update_page(text, {"a": "new\n", "b": "bee\n"}, {"b": "Bee"})
    assert "prose\n\n<!-- generated:begin a -->\nnew\n<!-- generated:end a -->\n\nmore" in new
    assert new.endswith("## Bee\n\n<!-- generated:begin b -->\nbee\n<!-- generated:end b -->\n")
    assert report.update_page(new, {"a": "new\n", "b": "bee\n"}) == new
    with pytest.raises(report.ReportError, match="'a'"):
        report.update_page(text, {"b": "bee\n"})


def test_a_dated_json_uses_its_date(tmp_path):
    assert report.json_date({"date": "2027-01-02T03:04:05"}, Path("x.json"), tmp_path) == (
        "2027-01-02"
    )
    runs = {"runs": [{"started": "2026-12-05T03:55:03"}]}
    assert report.json_date(runs, Path("x.json"), tmp_path) == "2026-12-05"


@pytest.mark.skipif(shutil.which("git") is None, reason="no git")
def test_undated_json_takes_its_commit_date_or_its_own_while_uncommitted(tmp_path):
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    env = {"GIT_COMMITTER_DATE": "2020-03-04T12:00:00", "GIT_AUTHOR_DATE": "2020-03-04T12:00:00"}
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "a"], check=True)
    (tmp_path / "b.json").write_text("{}")
    untracked = report.json_date({}, Path("b.json"), tmp_path)
    subprocess.run([*git, "add", "b.json"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "b"], check=True, env={**os.environ, **env})
    assert report.json_date({}, Path("b.json"), tmp_path) == "2020-03-04"
    (tmp_path / "b.json").write_text('{"x": 1}')  # re-run, not yet committed: the file's date
    today = datetime.date.today().isoformat()
    assert report.json_date({}, Path("b.json"), tmp_path) == untracked == today
    assert report.json_date({}, Path("b.json"), tmp_path / "no-repo-here") == "unknown"
