"""Measured cost tables behind ``method="auto"``: the method picked is the one measured fastest.

A table is a list of rows ``{"kind", "L", "channels", "channels2", "batch", "pass", "method",
"ms"}``, one per measured (shape, pass, method), written by ``equijax bench tp --tune``. ``pass`` is
"fwd" (the product alone), "fwdbwd" (gradient of a loss of the product) or "bwdbwd" (gradient of
a loss of that gradient: the force-training pass).

Lookup (`fastest`): rows of the same kind, L and channels2; the measured (channels, batch) nearest
on a log scale; the fastest of the allowed methods there. The user's table
(``$EQUIJAX_CACHE/tp_tuning_<backend>.json``, default ``~/.cache/equijax``) is used where it has
the shape, else the one packaged with equijax (measured on a 2-core CPU; none yet for GPU), else
`fastest` returns None and the caller falls back to its FLOP count.
"""

from __future__ import annotations

import functools
import json
import math
import os
from importlib import resources
from pathlib import Path

import jax

PASSES = ("fwd", "fwdbwd", "bwdbwd")
_FIELDS = ("kind", "L", "channels", "channels2", "batch", "pass", "method", "ms")


def user_table_path(backend: str | None = None) -> Path:
    """Where ``equijax bench tp --tune`` writes this backend's table."""
    backend = backend or jax.default_backend()
    root = Path(os.environ.get("EQUIJAX_CACHE") or Path.home() / ".cache" / "equijax")
    return root / f"tp_tuning_{backend}.json"


def _read(path) -> list:
    rows = json.loads(Path(path).read_text())["rows"]
    for row in rows:
        missing = [f for f in _FIELDS if f not in row]
        if missing:
            raise ValueError(f"{path}: tuning row {row} lacks {missing}")
    return rows


@functools.cache
def tables(backend: str) -> tuple[list, list]:
    """(user rows, packaged rows) for ``backend``; either may be empty."""
    user = user_table_path(backend)
    user_rows = _read(user) if user.exists() else []
    packaged = resources.files("equijax.nn.tp") / "data" / f"tp_tuning_{backend}.json"
    packaged_rows = _read(packaged) if packaged.is_file() else []
    return user_rows, packaged_rows


def write_table(rows: list, path: str | os.PathLike, machine: dict | None = None) -> Path:
    """Write measured rows (each with `_FIELDS`) as a table; clears the lookup cache."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = [{f: row[f] for f in _FIELDS} for row in rows]
    path.write_text(json.dumps({"machine": machine or {}, "rows": clean}, indent=1) + "\n")
    tables.cache_clear()
    return path


def _nearest(rows: list, key: str, value: int) -> list:
    target = math.log(max(value, 1))
    best = min(abs(math.log(r[key]) - target) for r in rows)
    return [r for r in rows if abs(math.log(r[key]) - target) == best]


def fastest_in(
    rows: list,
    kind: str,
    lmax: int,
    channels: int,
    channels2: int,
    batch: int,
    pass_: str,
    methods,
) -> str | None:
    """The fastest of ``methods`` in ``rows`` for this shape and pass (nearest measured), or None."""
    if pass_ not in PASSES:
        raise ValueError(f"pass {pass_!r}: expected one of {PASSES}")
    rows = [
        r
        for r in rows
        if r["kind"] == kind
        and r["L"] == lmax
        and r["channels2"] == channels2
        and r["pass"] == pass_
        and r["method"] in methods
    ]
    if not rows:
        return None
    rows = _nearest(_nearest(rows, "channels", channels), "batch", batch)
    return min(rows, key=lambda r: r["ms"])["method"]


def fastest(
    kind: str,
    lmax: int,
    channels: int,
    channels2: int,
    batch: int,
    pass_: str,
    methods,
    backend: str | None = None,
) -> str | None:
    """`fastest_in` the user's table, then the packaged one, for ``backend`` (default: jax's)."""
    for rows in tables(backend or jax.default_backend()):
        found = fastest_in(rows, kind, lmax, channels, channels2, batch, pass_, methods)
        if found is not None:
            return found
    return None
