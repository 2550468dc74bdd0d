"""What a sweep runs: a base experiment config, fixed overrides, and grid and zip axes expanded
into points (one ``key=value`` override list each).

Axes come from a ``sweep:`` block in the experiment YAML or from the command line, in Hydra's
override syntax (``model.n_conv=1,2,3``, ``optim.learning_rate=range(1,4)``,
``model=chgnet_tiny,equivariant_small``). Grid axes form a Cartesian product; zip axes (all of one
length) advance together; the points are the product of the grid with the zipped tuples.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf

from equijax.configs import resolve_config

LAUNCHERS = ("local", "slurm", "submitit-local")
TASKS = ("train", "bench-tp")


class SweepError(ValueError):
    """A sweep specification is malformed; the message names the key."""


@dataclasses.dataclass
class Point:
    """One run of a sweep: its name (its run directory) and the overrides that define it."""

    name: str
    axes: dict[str, str]
    overrides: list[str]


@dataclasses.dataclass
class SweepSpec:
    """A sweep: ``config`` (a YAML path or packaged experiment name; for ``task="bench-tp"`` it may
    be None) plus ``overrides``, ``grid`` and ``zip`` axes (key -> list of values), a ``dir`` holding
    one run directory per point, ``jobs`` points at a time, a ``launcher`` (local subprocesses,
    SLURM through submitit, or submitit's local executor) and ``slurm`` executor parameters
    (submitit's names without the ``slurm_`` prefix: partition, timeout_min, gpus_per_node...)."""

    config: str | None = None
    overrides: list[str] = dataclasses.field(default_factory=list)
    grid: dict[str, list] = dataclasses.field(default_factory=dict)
    zip: dict[str, list] = dataclasses.field(default_factory=dict)
    dir: str | None = None
    jobs: int = 1
    launcher: str = "local"
    task: str = "train"
    slurm: dict[str, Any] = dataclasses.field(default_factory=dict)

    def check(self) -> SweepSpec:
        """Raise `SweepError` naming the key of the first bad field; returns self."""
        if self.launcher not in LAUNCHERS:
            raise SweepError(f"sweep key 'launcher': {self.launcher!r} is not one of {LAUNCHERS}")
        if self.task not in TASKS:
            raise SweepError(f"sweep key 'task': {self.task!r} is not one of {TASKS}")
        if self.jobs < 1:
            raise SweepError(f"sweep key 'jobs': must be >= 1, got {self.jobs}")
        for kind, axes in (("grid", self.grid), ("zip", self.zip)):
            for key, values in axes.items():
                if not isinstance(values, list) or not values:
                    raise SweepError(f"sweep key '{kind}.{key}': needs a non-empty list of values")
        both = set(self.grid) & set(self.zip)
        if both:
            raise SweepError(f"sweep key 'zip.{min(both)}': also a grid axis")
        lengths = {key: len(v) for key, v in self.zip.items()}
        if len(set(lengths.values())) > 1:
            raise SweepError(f"sweep key 'zip': zip axes need equal lengths, got {lengths}")
        return self


def format_value(value: Any) -> str:
    """A YAML value as the text of a ``key=value`` override (lists and booleans in YAML form)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def parse_axis(text: str) -> tuple[str, list[str]]:
    """``"key=a,b,c"`` (Hydra's sweep syntax: ``range()``, quoted commas, lists) -> (key, values)."""
    try:
        (override,) = OverridesParser.create().parse_overrides([text])
    except HydraException as err:
        raise SweepError(f"sweep axis {text!r}: {str(err).splitlines()[0]}") from None
    key = override.get_key_element()
    if override.is_sweep_override():
        return key, list(override.sweep_string_iterator())
    return key, [override.get_value_element_as_str()]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+,-]+", "-", text).strip("-")


def point_name(axes: dict[str, str]) -> str:
    """A readable, stable directory name of a point: ``n_conv=2,lr=0.003`` style (last key
    component), with a short hash when that would be ambiguous or long."""
    if not axes:
        return "single"
    short = ",".join(f"{key.split('.')[-1]}={value}" for key, value in axes.items())
    name = _slug(short)
    if len(name) > 80 or name != short or len({k.split(".")[-1] for k in axes}) < len(axes):
        digest = hashlib.sha1(json.dumps(axes, sort_keys=True).encode()).hexdigest()[:8]
        name = f"{name[:70]}-{digest}"
    return name


def expand(spec: SweepSpec) -> list[Point]:
    """The points of ``spec``: grid product x zipped tuples, grid axes in the order given."""
    spec.check()
    grid_keys = list(spec.grid)
    grid_values = [[format_value(v) for v in spec.grid[k]] for k in grid_keys]
    zip_keys = list(spec.zip)
    zipped = list(zip(*[[format_value(v) for v in spec.zip[k]] for k in zip_keys])) or [()]
    points, seen = [], set()
    for combo in itertools.product(*grid_values):
        for tup in zipped:
            axes = dict(zip(grid_keys, combo)) | dict(zip(zip_keys, tup))
            name = point_name(axes)
            if name in seen:
                raise SweepError(f"sweep: two points share the name {name!r} (repeated values?)")
            seen.add(name)
            points.append(
                Point(name, axes, [*spec.overrides, *(f"{k}={v}" for k, v in axes.items())])
            )
    return points


def from_yaml_block(block: dict | None, config: str | None) -> SweepSpec:
    """A `SweepSpec` from a ``sweep:`` block (unknown keys raise `SweepError` naming them)."""
    block = dict(block or {})
    fields = {f.name for f in dataclasses.fields(SweepSpec)}
    unknown = sorted(set(block) - fields)
    if unknown:
        raise SweepError(f"sweep key {unknown[0]!r}: unknown (known: {sorted(fields)})")
    block.setdefault("config", config)
    block["overrides"] = [str(o) for o in block.get("overrides") or []]
    return SweepSpec(**block)


def load_spec(
    config: str | None,
    grid: list[str] = (),
    zip_axes: list[str] = (),
    overrides: list[str] = (),
    **options,
) -> SweepSpec:
    """The sweep of ``config``'s ``sweep:`` block (if any), with command-line axes (``key=a,b``
    strings; they replace YAML axes of the same key), extra overrides and options (dir, jobs,
    launcher, task: ``None`` keeps the block's value)."""
    block = None
    if config is not None:
        path = resolve_config(config)
        raw = OmegaConf.to_container(OmegaConf.load(path))
        block = raw.get("sweep") if isinstance(raw, dict) else None
        config = str(Path(path).resolve())
    spec = from_yaml_block(block, config)
    for text in grid:
        key, values = parse_axis(text)
        spec.zip.pop(key, None)
        spec.grid[key] = values
    for text in zip_axes:
        key, values = parse_axis(text)
        spec.grid.pop(key, None)
        spec.zip[key] = values
    spec.overrides = [*spec.overrides, *overrides]
    for key, value in options.items():
        if value is not None:
            setattr(spec, key, value)
    if spec.dir is None:
        stem = Path(config).stem if config else spec.task
        spec.dir = str(Path("runs") / "sweeps" / stem)
    return spec.check()
