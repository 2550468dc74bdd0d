"""`equijax evaluate`'s refusals (its numbers are checked against a real run's recorded MAEs in
`tests/sweep/test_runner.py`)."""

from __future__ import annotations

import pytest

from equijax.cli import main
from equijax.training.evaluate import run_split


def test_bad_batch_size_exits_before_loading(tmp_path):
    with pytest.raises(SystemExit, match="--batch-size must be >= 1"):
        main(["evaluate", str(tmp_path), "--batch-size", "0"])


def test_a_directory_that_is_not_a_run_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "no config.json (not an equijax training run)" in capsys.readouterr().err


def test_unknown_split_names_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'val', 'test'\)"):
        run_split(tmp_path, "validation")
