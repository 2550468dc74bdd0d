"""`equijax data build|check` through the entry point: a dataset `data.source` can open, and bad
input as one line with exit status 2."""

from __future__ import annotations

import json

import pytest

from equijax.cli import main
from equijax.data import generate_emt_dataset, write_mptrj_json
from equijax.graphs.dataset import DiskDataset


def test_build_and_check(tmp_path, capsys):
    source = tmp_path / "mptrj.json"
    write_mptrj_json(generate_emt_dataset(6, seed=1, progress=False), source)
    argv = ["data", "build", str(source), str(tmp_path / "ds"), "--workers", "0", "--no-progress"]
    assert main([*argv, "--config", "chgnet_emt_small"]) == 0
    summary = json.loads(capsys.readouterr().out)
    ds = DiskDataset(tmp_path / "ds")
    assert summary["structures"] == len(ds) == 6 and summary["cutoffs"] == [5.0, 3.0]
    assert main(["data", "check", str(tmp_path / "ds")]) == 0


def test_bad_input_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"mp-1": {"0": {"energy_per_atom": 1.0}}}')
    cases = {
        "missing source": ([str(tmp_path / "none.json"), str(tmp_path / "a")], "none.json"),
        "malformed frame": ([str(bad), str(tmp_path / "b")], "mp-1/0"),
    }
    for argv, named in cases.values():
        with pytest.raises(SystemExit) as stop:
            main(["data", "build", *argv, "--workers", "0", "--no-progress"])
        err = capsys.readouterr().err.strip().splitlines()
        assert stop.value.code == 2 and len(err) == 1 and named in err[0], err
