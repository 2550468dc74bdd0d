"""Every user error through the `equijax` entry point: exit status 2, one line on stderr naming
the file, structure or key, and no traceback; ``--debug`` shows the traceback instead."""

import ase
import ase.io
import pytest

from equijax.cli import main


def _run(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    return stop.value.code, err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    bad = root / "bad.extxyz"
    bad.write_text("garbage\nnot an xyz file\n")
    overlap = root / "overlap.extxyz"
    ase.io.write(
        overlap,
        ase.Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 0]], cell=[5, 5, 5], pbc=True),
    )
    return {"root": root, "bad": str(bad), "overlap": str(overlap)}


def test_user_errors_exit_2_with_one_line(files, capsys):
    cases = {
        "missing file": (["predict", str(files["root"] / "none.extxyz")], "none.extxyz"),
        "unreadable file": (["predict", files["bad"]], "bad.extxyz"),
        "two atoms on one spot": (["predict", files["overlap"]], "overlap.extxyz, frame 0"),
        "unknown model": (["predict", files["overlap"], "--model", "nosuch"], "nosuch"),
        "missing run directory": (["evaluate", str(files["root"] / "norun")], "norun"),
        "bad config key": (["train", "--config", "chgnet_emt_small", "model.nokey=1"], "nokey"),
        "unknown config": (["train", "--config", "nosuch_config"], "nosuch_config"),
        "bad argument value": (["evaluate", "x", "--batch-size", "0"], "--batch-size"),
    }
    failures = []
    for case, (argv, named) in cases.items():
        code, err = _run(argv, capsys)
        lines = err.strip().splitlines()
        if code != 2 or len(lines) != 1 or "Traceback" in err or named not in err:
            failures.append(f"{case}: exit {code}, stderr {err!r}")
    assert not failures, "\n".join(failures)


def test_debug_shows_the_traceback(files):
    with pytest.raises(Exception, match="no such file"):
        main(["--debug", "predict", str(files["root"] / "none.extxyz")])
