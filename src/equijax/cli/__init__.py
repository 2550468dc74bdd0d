"""The `equijax` command line: `equijax demo`, `equijax bench graphs|chgnet-infer|chgnet-train|tp|model`,
`equijax train`, `equijax sweep`, `equijax predict FILE...`, `equijax evaluate RUN_DIR...`.

`main` is the console script; `equijax.cli.parser` builds the arguments and
`equijax.cli.commands` holds what each subcommand runs."""

from __future__ import annotations

import os

from equijax.cli.parser import build_parser
from equijax.sweep.spec import SweepError
from equijax.training.config import ConfigError

__all__ = ["build_parser", "main"]


def _single_thread() -> None:
    """Pin numeric libraries to one thread, as the graph benchmark's anchor was measured."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `equijax` command."""
    _single_thread()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, SweepError, FileNotFoundError) as err:  # user errors: no traceback
        parser.exit(2, f"equijax {args.command}: error: {err}\n")
