"""The `equijax` command line: `equijax demo`, `equijax bench graphs|chgnet-infer|chgnet-train|tp|model`,
`equijax train`, `equijax sweep`, `equijax predict FILE...`, `equijax evaluate RUN_DIR...`.

`main` is the console script; `equijax.cli.parser` builds the arguments and
`equijax.cli.commands` holds what each subcommand runs."""

from __future__ import annotations

import equijax._threads  # noqa: F401 - first: pins BLAS/OpenMP threads before numpy loads
from equijax.cli.parser import build_parser
from equijax.sweep.spec import SweepError
from equijax.training.config import ConfigError

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `equijax` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, SweepError, FileNotFoundError) as err:  # user errors: no traceback
        parser.exit(2, f"equijax {args.command}: error: {err}\n")
