"""Plain-text tables for the console: a title and columns aligned to their widest cell (first
column left-aligned, the others right-aligned), as printed by `equijax predict`, `equijax demo` and
the benchmarks.

A low module (no equijax imports), so that any layer may print a table.
"""

from __future__ import annotations


class Table:
    """A plain-text table printed with aligned columns."""

    def __init__(self, title: str, columns: list[str]):
        self.title, self.columns, self.rows = title, columns, []

    def add(self, *cells) -> None:
        self.rows.append([str(c) for c in cells])

    def render(self) -> str:
        widths = [max(len(str(c)) for c in col) for col in zip(self.columns, *self.rows)]
        line = "  ".join("-" * w for w in widths)
        fmt = lambda cells: "  ".join(  # noqa: E731
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        )
        return "\n".join([self.title, line, fmt(self.columns), line, *map(fmt, self.rows), line])

    def print(self) -> None:
        print(self.render())
