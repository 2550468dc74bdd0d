"""The argument parser loads no numerical library, so `equijax --help` and usage errors answer
at once; a command's handler (and jax) loads only when it runs. Checked in a fresh interpreter
(a lazy import inside a captured test would also bind logging handlers to pytest's streams)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import contextlib, io, sys
from equijax.cli import build_parser, main
parser = build_parser()
args = parser.parse_args(["predict", "x.xyz", "--model", "chgnet-0.2.0"])
assert args.model == "chgnet-0.2.0" and callable(args.func)
err = io.StringIO()
with contextlib.redirect_stderr(err):
    try:
        main(["bench", "tp", "--lmax", "one"])
    except SystemExit as stop:
        print("exit", stop.code)
assert "expected '1,2,3' or '1-6'" in err.getvalue(), err.getvalue()
heavy = [m for m in ("jax", "numpy", "torch", "flax") if m in sys.modules]
print("loaded", ",".join(heavy) or "none")
"""


def test_parsing_and_usage_errors_import_no_numerical_library():
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["exit", "2", "loaded", "none"]
