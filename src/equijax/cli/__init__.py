"""The `equijax` command line: `equijax demo`, `equijax bench graphs|chgnet-infer|chgnet-train|tp|model`,
`equijax train`, `equijax sweep`, `equijax predict FILE...`, `equijax evaluate RUN_DIR...`.

`main` is the console script; `equijax.cli.parser` builds the arguments and
`equijax.cli.commands` holds what each subcommand runs."""

from __future__ import annotations

import equijax._threads  # noqa: F401 - first: pins BLAS/OpenMP threads before numpy loads
from equijax.cli.parser import build_parser

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `equijax` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # the handlers (jax, models, training) load after parsing: `--help` answers at once
    from equijax.cli.commands import USER_ERRORS

    try:
        return args.func(args)
    except USER_ERRORS as err:  # user errors: one line, no traceback
        parser.exit(2, f"equijax {args.command}: error: {err}\n")
