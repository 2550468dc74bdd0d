"""Sweep tasks other than training: ``bench-tp`` runs `equijax.bench.tp` at one point's sizes.

A bench-tp sweep's config YAML holds a ``bench_tp:`` block (`BenchTPConfig` fields) next to its
``sweep:`` block; overrides and axes set those fields (``lmax=1,2,3``, ``channels=8,16``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from equijax.bench import tp
from equijax.sweep.spec import SweepError


@dataclasses.dataclass
class BenchTPConfig:
    """One `equijax bench tp` run: ``lmax`` (one L per point), sizes N (``batch``) and C
    (``channels``), ``methods`` (comma list; null = all available), ``modes``, ``repeats``."""

    lmax: int = 2
    batch: int = 1000
    channels: int = 16
    methods: str | None = None
    modes: str = "fwd,fwdbwd"
    repeats: int = 5
    e3nn_cg_lmax: int = 4
    cue_lmax: int = 2


def bench_tp_config(config: str | None, overrides: list[str]) -> dict:
    """The typed `BenchTPConfig` of a point as a dict; raises `SweepError` naming a bad key."""
    try:
        merged = OmegaConf.structured(BenchTPConfig)
        if config is not None:
            block = OmegaConf.load(config).get("bench_tp")
            if block is not None:
                merged = OmegaConf.merge(merged, block)
        merged = OmegaConf.merge(
            merged, OmegaConf.from_dotlist([o.removeprefix("bench_tp.") for o in overrides])
        )
        return dataclasses.asdict(OmegaConf.to_object(merged))
    except OmegaConfBaseException as err:
        raise SweepError(
            f"bench_tp key {getattr(err, 'full_key', None)!r}: {getattr(err, 'msg', str(err))}"
        ) from None


def run_bench_tp(config: dict, point_dir: Path) -> dict:
    """Run the benchmark, keep its JSON and plot in ``point_dir``; returns flat metrics:
    ``<method>_<mode>_ms`` and ``<method>_<mode>_speedup`` (over the reference it is compared
    with in the same run)."""
    result = tp.run(
        lmaxes=[config["lmax"]],
        batch=config["batch"],
        channels=config["channels"],
        methods=config["methods"].split(",") if config["methods"] else None,
        repeats=config["repeats"],
        modes=tuple(config["modes"].split(",")),
        out=str(point_dir / "bench_tp.json"),
        plot_path=None,
        e3nn_cg_lmax=config["e3nn_cg_lmax"],
        cue_lmax=config["cue_lmax"],
    )
    metrics = {"machine": result["machine"]["summary"]}
    for row in result["rows"]:
        for mode in tp.MODES:
            if f"{mode}_ms" in row:
                metrics[f"{row['method']}_{mode}_ms"] = row[f"{mode}_ms"]
    for ratio in result["ratios"]:
        for mode in tp.MODES:
            if f"{mode}_speedup" in ratio:
                metrics[f"{ratio['method']}_{mode}_speedup"] = ratio[f"{mode}_speedup"]
    return metrics
