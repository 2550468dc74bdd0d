"""`equijax bench tp --tune`: measure every method of the Gaunt grid product and write the table
that ``method="auto"`` reads (`equijax.nn.tp.tuning`).

Each (L, channels) is timed for the three passes (forward, forward+backward, backward of the
backward) with the inputs of `equijax bench tp` (x2 with one channel, every irrep up to L in and
out). The table goes to the user's cache (`tuning.user_table_path`) unless a path is given.
"""

from __future__ import annotations

from equijax.bench.common import Table, machine_info
from equijax.bench.tp import MODES, machine_rates, measure
from equijax.nn.tp import gaunt_grid, tuning

TUNED_METHODS = tuple(m for m in gaunt_grid.METHODS if m != "auto")


def tune(
    lmaxes=range(1, 7),
    channels_list=(16,),
    batch: int = 1000,
    repeats: int = 5,
    path=None,
) -> list:
    """Time every Gaunt-grid method at each (L, channels); write and return the table rows."""
    rates = machine_rates(big=False)
    rows = []
    table = Table(
        "equijax bench tp --tune: gaunt_grid methods", ["L", "C", "pass", "ms", "fastest"]
    )
    for lmax in lmaxes:
        for channels in channels_list:
            measured = {}
            for method in TUNED_METHODS:
                name = f"gaunt_grid:{method}"
                row = measure(name, lmax, batch, channels, repeats, MODES, rates)
                for mode in MODES:
                    if f"{mode}_ms" in row:
                        measured.setdefault(mode, {})[method] = row[f"{mode}_ms"]
                        rows.append(
                            {
                                "kind": "gaunt_grid",
                                "L": lmax,
                                "channels": channels,
                                "channels2": 1,
                                "batch": batch,
                                "pass": mode,
                                "method": method,
                                "ms": row[f"{mode}_ms"],
                            }
                        )
            for mode, times in measured.items():
                best = min(times, key=times.get)
                ms = ", ".join(f"{m} {t:.3g}" for m, t in times.items())
                table.add(lmax, channels, mode, ms, best)
            print(f"  tuned L={lmax} C={channels}", flush=True)
    table.print()
    out = tuning.write_table(rows, path or tuning.user_table_path(), machine_info())
    print(f"wrote {out} (read by method='auto' on this backend)")
    return rows
