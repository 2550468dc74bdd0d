"""Rows of the Benchmarks page from the committed bench JSONs: one small extractor per JSON
schema (`equijax.bench.report` declares which JSON each benchmark reads and with which).

Every extractor takes the parsed JSON and returns ``(rows, notes)``: the table rows (equijax's
number, the reference's, the unit and which way is better) and short notes for the caption (how
well the two agreed). A missing key raises `KeyError`, which the report turns into one line that
names the JSON."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One measurement of equijax against one reference.

    ``higher_is_better`` is True for rates (structures/s) and False for costs (seconds, MB,
    errors); ``kind`` is "speed", "memory" or "accuracy"; ``chart`` says whether the summary chart
    shows it. ``reference`` is None where the reference was not run."""

    what: str
    against: str
    equijax: float
    reference: float | None
    unit: str
    higher_is_better: bool
    kind: str = "speed"
    chart: bool = True

    @property
    def ratio(self) -> float | None:
        """equijax's advantage: > 1 means equijax is faster, smaller or more accurate."""
        if not self.reference or not self.equijax:
            return None
        if self.higher_is_better:
            return self.equijax / self.reference
        return self.reference / self.equijax


def _agreement(label: str, values) -> list[str]:
    values = [v for v in values if v is not None]
    return [f"{label} {max(values):.1e}"] if values else []


def graphs(d: dict) -> tuple[list[Row], list[str]]:
    """`equijax bench graphs`: structures/s of graph construction against CHGNet's converter."""
    ref = d["chgnet"]
    version = d["machine"]["versions"].get("chgnet") or "?"
    row = Row(
        what=f"{d['n_structures']} benchmark structures to crystal graphs (with angles)",
        against=f"chgnet {version} converter ({ref.get('algorithm', '?')})",
        equijax=d["equijax"]["structures_per_s"],
        reference=ref.get("structures_per_s") if ref.get("available") else None,
        unit="structures/s",
        higher_is_better=True,
    )
    return [row], []


def chgnet_infer(d: dict) -> tuple[list[Row], list[str]]:
    """`equijax bench chgnet-infer`: structures/s of batched inference against PyTorch chgnet."""
    ref = d["chgnet"]
    row = Row(
        what=f"{d.get('task', 'efsm')}, batch {d['batch_size']}, {d['n_structures']} structures",
        against=f"chgnet ({ref.get('device', '?')})",
        equijax=d["equijax"]["structures_per_s"],
        reference=ref.get("structures_per_s") if ref.get("available") else None,
        unit="structures/s",
        higher_is_better=True,
    )
    diff = d.get("max_abs_difference_first_batch") or {}
    return [row], _agreement("max |ΔE| on the first batch, eV/atom:", [diff.get("energy_per_atom")])


def _variant(key: str) -> str:
    """``equijax_direct_remat`` -> "direct, remat"; the plain ``equijax`` run is conservative."""
    parts = [p for p in key.removeprefix("equijax").split("_") if p]
    if not parts or not parts[0].startswith("direct"):
        parts.insert(0, "conservative")
    return ", ".join(parts)


def chgnet_train(d: dict) -> tuple[list[Row], list[str]]:
    """`equijax bench chgnet-train`: ms per training step of every equijax variant in the JSON
    (conservative, direct, remat, ...) against chgnet's step, and the step's resident-memory growth
    where the JSON measured it (``--memory``)."""
    ref = d["chgnet"]
    against = f"chgnet ({ref.get('device', '?')})"
    available = ref.get("available", True)
    variants = [k for k in d if k.startswith("equijax") and "ms_per_step" in d[k]]
    rows = [
        Row(
            what=f"batch {d['batch_size']}, training step, {_variant(k)}",
            against=against,
            equijax=d[k]["ms_per_step"],
            reference=ref.get("ms_per_step") if available else None,
            unit="ms/step",
            higher_is_better=False,
        )
        for k in variants
    ]
    rows += [
        Row(
            what=f"batch {d['batch_size']}, step memory (RSS growth), {_variant(k)}",
            against=against,
            equijax=d[k]["step_rss_growth_MB"],
            reference=ref.get("step_rss_growth_MB") if available else None,
            unit="MB",
            higher_is_better=False,
            kind="memory",
        )
        for k in variants
        if "step_rss_growth_MB" in d[k]
    ]
    return rows, []


def md(d: dict) -> tuple[list[Row], list[str]]:
    """`equijax bench md`: ASE MD steps/s and peak resident memory against CHGNetCalculator."""
    rows, memory = [], []
    for r in d["rows"]:
        eq, ref = r["equijax"], r.get("chgnet") or {}
        what = f"Cu{r['atoms']}, {r['dynamics'].upper()}"
        rows.append(
            Row(
                what=f"{what}, MD steps",
                against="CHGNetCalculator",
                equijax=eq["steps_per_s"],
                reference=ref.get("steps_per_s"),
                unit="steps/s",
                higher_is_better=True,
            )
        )
        if "peak_rss_gb" in eq:
            memory.append(
                Row(
                    what=f"{what}, peak RSS",
                    against="CHGNetCalculator",
                    equijax=eq["peak_rss_gb"],
                    reference=ref.get("peak_rss_gb"),
                    unit="GB",
                    higher_is_better=False,
                    kind="memory",
                )
            )
    diffs = [r.get("first_energy_difference_eV_per_atom") for r in d["rows"]]
    return rows + memory, _agreement("max first-energy difference, eV/atom:", diffs)


def timed_rows(reference: str):
    """Extractor for JSONs with ``rows`` of ``equijax_s`` / ``reference_s`` (`equijax bench
    sevennet`, `equijax bench mace`); ``reference`` names the reference."""

    def extract(d: dict) -> tuple[list[Row], list[str]]:
        rows = [
            Row(
                what=f"{r['mode']}: {r['what']}",
                against=reference,
                equijax=r["equijax_s"],
                reference=r.get("reference_s"),
                unit="s",
                higher_is_better=False,
            )
            for r in d["rows"]
        ]
        diffs = [r.get("max_energy_diff_ev_per_atom") for r in d["rows"]]
        return rows, _agreement("max energy difference, eV/atom:", diffs)

    return extract


def mlip(d: dict) -> tuple[list[Row], list[str]]:
    """`experiments/mace/mlip_bench.py`: seconds of mlip's MACE and equijax's, alternated runs."""
    whats = {(r["mode"], r.get("atoms")): r["what"] for r in d["rows"]}
    version = d["machine"]["versions"].get("mlip") or "?"
    rows = [
        Row(
            what=f"{s['mode']}: {whats.get((s['mode'], s['atoms']), str(s['atoms']) + ' atoms')}",
            against=f"mlip {version}",
            equijax=s["equijax_s"],
            reference=s["mlip_s"],
            unit="s",
            higher_is_better=False,
        )
        for s in d["summary"]
    ]
    return rows, ["not the same function (random weights, different bases): cost only"]


def model(d: dict) -> tuple[list[Row], list[str]]:
    """`equijax bench model`: the same model with each of equijax's tensor products against its
    baseline tensor product (e3nn-jax's ``tensor_product``)."""
    base = d["baseline"]
    against = f"tp={base['tp']}"
    rows = []
    for name, run in d["runs"].items():
        if name == base["tp"]:
            continue
        rows.append(
            Row(
                what=f"{d['config']}, tp={name}, inference",
                against=against,
                equijax=run["infer_atom_steps_per_s"],
                reference=base["infer_atom_steps_per_s"],
                unit="atom-steps/s",
                higher_is_better=True,
            )
        )
        rows.append(
            Row(
                what=f"{d['config']}, tp={name}, training step",
                against=against,
                equijax=run["train_ms_per_step"],
                reference=base["train_ms_per_step"],
                unit="ms/step",
                higher_is_better=False,
            )
        )
    notes = []
    if "max_energy_difference_eV" in d:
        notes.append(f"max energy difference {d['max_energy_difference_eV']:.1e} eV")
    return rows, notes


TP_MODES = {"fwd": "forward", "fwdbwd": "forward+backward", "bwdbwd": "backward of backward"}


def tp(methods: tuple[str, ...] | None = None, chart_mode: str = "fwdbwd"):
    """Extractor for `equijax bench tp`: for each of the JSON's ``ratios`` entries (a method
    against a reference at one L), the three timed modes in ms; only ``methods`` if given, and
    only ``chart_mode`` in the chart."""

    def extract(d: dict) -> tuple[list[Row], list[str]]:
        times = {(r["method"], r["L"]): r for r in d["rows"]}
        rows = []
        for q in d["ratios"]:
            if methods and q["method"] not in methods:
                continue
            mine, theirs = times[(q["method"], q["L"])], times[(q["reference"], q["L"])]
            for mode, label in TP_MODES.items():
                rows.append(
                    Row(
                        what=f"{q['method']}, L={q['L']}, {label}",
                        against=q["reference"],
                        equijax=mine[f"{mode}_ms"],
                        reference=theirs.get(f"{mode}_ms"),
                        unit="ms",
                        higher_is_better=False,
                        chart=mode == chart_mode,
                    )
                )
        w = d["workload"]
        agree = [
            a["max_relative_difference"]
            for a in d.get("agreement", [])
            if not methods or a["method"] in methods
        ]
        notes = [f"N={w['batch']}, C={w['channels']}, {w['dtype']}"]
        return rows, notes + _agreement("max relative difference:", agree)

    return extract


def training_quality(d: dict) -> tuple[list[Row], list[str]]:
    """A training run's ``result.json``: validation MAEs against the baselines it records (the
    per-element linear fit for energy, zero for forces and stress)."""
    val, base = d["val"], d["baseline_val"]
    pairs = [
        ("energy", "mae_energy", "energy_mae_per_atom", "per-element linear fit", "eV/atom"),
        ("forces", "mae_forces", "force_mae_zero", "zero", "eV/Å"),
        ("stress", "mae_stress", "stress_mae_zero", "zero", "GPa"),
    ]
    rows = [
        Row(
            what=f"validation MAE, {name}",
            against=against,
            equijax=val[mine],
            reference=base[theirs],
            unit=unit,
            higher_is_better=False,
            kind="accuracy",
            chart=False,
        )
        for name, mine, theirs, against, unit in pairs
        if mine in val and theirs in base
    ]
    return rows, [f"{d['steps']} steps"] if "steps" in d else []
