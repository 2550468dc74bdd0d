"""`equijax bench report`: the Benchmarks page's generated tables and chart from the committed
bench JSONs (see `equijax.bench.report`)."""

from __future__ import annotations

from pathlib import Path

from equijax.bench import report


def cmd_bench_report(args) -> int:
    """Regenerate (or with ``--check`` compare) the page; a bad JSON or a stale page is one line
    and exit status 2."""
    root = Path(args.root)
    try:
        if args.check:
            problem = report.check(root, args.page, args.chart)
            if problem:
                raise SystemExit(f"equijax bench report: {problem}")
            print(f"{args.page} agrees with the bench JSONs")
            return 0
        changed = report.write(root, args.page, args.chart)
    except report.ReportError as err:
        raise SystemExit(f"equijax bench report: {err}") from None
    print(f"{'wrote' if changed else 'unchanged:'} {args.page}; wrote {args.chart}")
    return 0
