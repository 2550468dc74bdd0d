"""The `equijax` command line: `equijax demo`, `equijax bench graphs|chgnet-infer|chgnet-train|tp|model`,
`equijax train`, `equijax sweep`, `equijax predict FILE...`, `equijax evaluate RUN_DIR...`.

`main` is the console script; `equijax.cli.parser` builds the arguments and
`equijax.cli.commands` holds what each subcommand runs."""

from __future__ import annotations

import sys

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
        if args.debug:
            raise
        raise UserError(f"equijax {args.command}: error: {_one_line(err)}") from None
    except SystemExit as stop:  # a handler's message for bad arguments: a user error too
        if isinstance(stop.code, str) and not args.debug:
            message = _one_line(stop.code)
            if not message.startswith("equijax"):
                message = f"equijax {args.command}: error: {message}"
            raise UserError(message) from None
        raise


class UserError(SystemExit):
    """Exit status 2 after one line on stderr; ``str()`` is the line (so tests can match it)."""

    def __init__(self, message: str):
        print(message, file=sys.stderr)
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _one_line(message) -> str:
    return " ".join(str(message).split())
