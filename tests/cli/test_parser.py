"""The argument parser loads no numerical library, so `equijax --help` and usage errors answer
at once; a command's handler (and jax) loads only when it runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import sys
from equijax.cli import build_parser
parser = build_parser()
args = parser.parse_args(["predict", "x.xyz", "--model", "chgnet-0.2.0"])
assert args.model == "chgnet-0.2.0" and callable(args.func)
heavy = [m for m in ("jax", "numpy", "torch", "flax") if m in sys.modules]
print(",".join(heavy) or "none")
"""


def test_parsing_imports_no_numerical_library():
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "none"


def test_a_usage_error_exits_2_before_loading_anything(capsys):
    from equijax.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["bench", "tp", "--lmax", "one"])
    assert stop.value.code == 2
    assert "expected '1,2,3' or '1-6'" in capsys.readouterr().err
