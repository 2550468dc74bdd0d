"""Sweeps: expand grid and zip axes over an experiment config, run every point in its own run
directory (locally in parallel, or on SLURM through submitit), skip finished points on a re-run,
and collect the results into one table and plots.

`equijax sweep --config NAME|FILE --grid model.n_conv=1,2 --zip ...` is the command line;
`run_sweep` / `collect` are the functions behind it.
"""

from equijax.sweep.collect import collect, load_points, markdown_table
from equijax.sweep.runner import SweepOutcome, is_finished, run_point, run_sweep
from equijax.sweep.spec import (
    Point,
    SweepError,
    SweepSpec,
    expand,
    load_spec,
    parse_axis,
)

__all__ = [
    "Point",
    "SweepError",
    "SweepOutcome",
    "SweepSpec",
    "collect",
    "expand",
    "is_finished",
    "load_points",
    "load_spec",
    "markdown_table",
    "parse_axis",
    "run_point",
    "run_sweep",
]
