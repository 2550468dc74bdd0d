"""The Benchmarks page from data: `equijax bench report` reads the committed bench JSONs declared
in `BENCHMARKS`, renders the generated blocks of ``docs/benchmarks.md`` (a summary table and one
table per benchmark, each naming its JSON, machine and date) and a summary chart of equijax's
ratio against each reference (log scale). ``--check`` only compares.

The page keeps its hand-written prose: only the text between ``<!-- generated:begin NAME -->``
and ``<!-- generated:end NAME -->`` is replaced. A declared benchmark whose block the page lacks
is appended at the end of the page."""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from equijax.bench import report_extract as ex
from equijax.bench.report_extract import Row

PAGE = "docs/benchmarks.md"
CHART = "docs/img/benchmark_ratios.png"
SUMMARY = "summary"


class ReportError(ValueError):
    """A bench JSON or the page cannot be read or does not fit its declaration (one line)."""


@dataclass(frozen=True)
class Benchmark:
    """One committed bench JSON on the page: ``key`` names its generated block, ``short`` labels
    it in the chart, ``extract`` turns the parsed JSON into rows and caption notes."""

    key: str
    title: str
    short: str
    json: str
    command: str
    extract: Callable[[dict], tuple[list[Row], list[str]]]


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark(
        "graphs",
        "Graph construction vs CHGNet's converter",
        "graphs",
        "experiments/graph_construction/bench_graphs.json",
        "equijax bench graphs",
        ex.graphs,
    ),
    Benchmark(
        "chgnet-infer",
        "CHGNet 0.3.0 inference vs PyTorch chgnet",
        "CHGNet infer",
        "experiments/chgnet_inference/bench_chgnet_infer.json",
        "equijax bench chgnet-infer",
        ex.chgnet_infer,
    ),
    Benchmark(
        "chgnet-train",
        "CHGNet 0.3.0 training step vs PyTorch chgnet",
        "CHGNet train",
        "experiments/chgnet_emt_training/bench_chgnet_train.json",
        "equijax bench chgnet-train",
        ex.chgnet_train,
    ),
    Benchmark(
        "chgnet-train-memory",
        "CHGNet training step: memory, direct heads, remat",
        "CHGNet train b16",
        "experiments/chgnet_train_bench/cpu_memory_b16_remat.json",
        "equijax bench chgnet-train --batch-size 16 --steps 3 --forces conservative,direct --remat --memory",
        ex.chgnet_train,
    ),
    Benchmark(
        "md",
        "CHGNet 0.3.0 MD: EquijaxCalculator vs CHGNetCalculator",
        "CHGNet MD",
        "experiments/chgnet_md/bench_md_cpu.json",
        "equijax bench md --atoms 64,512,4000 --steps 10 --warmup 2",
        ex.md,
    ),
    Benchmark(
        "sevennet",
        "SevenNet-0 vs sevenn",
        "SevenNet-0",
        "experiments/sevennet/bench_sevennet_0.json",
        "equijax bench sevennet",
        ex.timed_rows("sevenn"),
    ),
    Benchmark(
        "mace",
        "MACE (MACE-MP-0 medium size) vs mace-torch",
        "MACE",
        "experiments/mace/bench_mace.json",
        "equijax bench mace",
        ex.timed_rows("mace-torch"),
    ),
    Benchmark(
        "mlip",
        "MACE vs mlip's MACE (own venv, alternated runs)",
        "MACE vs mlip",
        "experiments/mace/bench_mlip.json",
        "python experiments/mace/mlip_bench.py",
        ex.mlip,
    ),
    Benchmark(
        "tp-gaunt",
        "Gaunt tensor products vs e3nn-jax's grid product",
        "TP gaunt",
        "experiments/tp_microbench/bench_tp_cpu.json",
        "equijax bench tp --lmax 1-6 --methods gaunt_grid,cg,e3nn_cg,e3nn_s2grid,cue --e3nn-cg-lmax 6 --cue-lmax 4",
        ex.tp(methods=("gaunt_grid",)),
    ),
    Benchmark(
        "tp-cg",
        "Clebsch-Gordan tensor products vs e3nn-jax and cuequivariance",
        "TP cg",
        "experiments/tp_microbench/bench_tp_cpu_cg.json",
        "equijax bench tp --lmax 1-6 --methods cg,e3nn_cg,cue --e3nn-cg-lmax 6 --cue-lmax 4",
        ex.tp(),
    ),
    Benchmark(
        "model",
        "Equivariant model with each tensor product vs e3nn-jax's tensor_product",
        "model",
        "experiments/tp_microbench/bench_model_equivariant_cpu.json",
        "equijax bench model --config equivariant_emt_small",
        ex.model,
    ),
    Benchmark(
        "emt-training",
        "Small CHGNet trained on EMT data vs baselines",
        "EMT training",
        "experiments/chgnet_emt_training/result.json",
        "equijax train --config chgnet_emt_small",
        ex.training_quality,
    ),
)


@dataclass(frozen=True)
class Loaded:
    """A benchmark with its rows, caption notes, machine summary and date."""

    bench: Benchmark
    rows: list[Row]
    notes: list[str]
    machine: str
    date: str


def json_date(data: dict, path: Path, root: Path) -> str:
    """The date of a bench JSON: its own ``date``/``timestamp``/``started`` field (or its first
    run's ``started``) if it has one; else the date of the last commit that touched the file, or
    of the file itself where it has changes not yet committed; "unknown" without git."""
    runs = data.get("runs")
    first_run = runs[0] if isinstance(runs, list) and runs and isinstance(runs[0], dict) else {}
    for value in (data.get("date"), data.get("timestamp"), data.get("started")):
        if isinstance(value, str) and value:
            return value[:10]
    if isinstance(first_run.get("started"), str):
        return first_run["started"][:10]
    try:
        git = ["git", "-C", str(root)]
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", str(path)], capture_output=True, text=True
        )
        logged = subprocess.run(
            [*git, "log", "-1", "--format=%cs", "--", str(path)], capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    if dirty.returncode or logged.returncode:
        return "unknown"
    if dirty.stdout.strip() or not logged.stdout.strip():
        return datetime.date.fromtimestamp((root / path).stat().st_mtime).isoformat()
    return logged.stdout.strip()


def load(bench: Benchmark, root: Path) -> Loaded:
    """Read one benchmark's JSON under ``root`` and extract its rows."""
    path = root / bench.json
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReportError(f"bench JSON not found: {bench.json}") from None
    except (OSError, ValueError) as err:
        raise ReportError(f"cannot read bench JSON {bench.json}: {err}") from None
    try:
        rows, notes = bench.extract(data)
    except (KeyError, TypeError, IndexError) as err:
        raise ReportError(
            f"{bench.json} does not fit the '{bench.key}' extractor (missing {err})"
        ) from None
    machine = (data.get("machine") or {}).get("summary") or "not recorded"
    return Loaded(bench, rows, notes, machine, json_date(data, Path(bench.json), root))


def load_all(root: Path, benchmarks=BENCHMARKS) -> list[Loaded]:
    """Every declared benchmark, loaded (see `load`)."""
    return [load(b, root) for b in benchmarks]


def number(value: float | None) -> str:
    """A table number: about three significant figures, no exponent for ordinary sizes."""
    if value is None:
        return "-"
    size = abs(value)
    if size >= 100:
        return f"{value:.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:#.3g}"


def times(ratio: float | None) -> str:
    """A ratio as "2.38x", or "-" where there is none."""
    return "-" if ratio is None else f"{ratio:.2f}x"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _source(item: Loaded) -> str:
    return f"`{item.bench.json}`"


def render_block(item: Loaded) -> str:
    """One benchmark's generated block: a caption naming its JSON, machine and date, then its
    table of rows."""
    b = item.bench
    caption = [
        f"**{b.title}**: `{b.command}`",
        f"JSON {_source(item)}; machine: {item.machine}; date: {item.date}"
        + "".join(f"; {note}" for note in item.notes),
    ]
    lines = [
        f'<a id="{b.key}"></a>',
        "  \n".join(caption),
        "",
        "| what | against | equijax | reference | unit | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r in item.rows:
        cells = (r.what, r.against, number(r.equijax), number(r.reference), r.unit, times(r.ratio))
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _span(rows: list[Row]) -> str:
    ratios = [r.ratio for r in rows if r.ratio is not None]
    if not ratios:
        return "-"
    lo, hi = min(ratios), max(ratios)
    return times(lo) if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f}-{hi:.2f}x"


def render_summary(items: list[Loaded], chart: str = CHART, page: str = PAGE) -> str:
    """The summary block: the chart and one row per benchmark (ratio range per kind of row, JSON,
    machine, date)."""
    rel = Path(os.path.relpath(Path(chart), Path(page).parent)).as_posix()
    lines = [
        f"![equijax's ratio against each reference, per benchmark]({rel})",
        "",
        "| benchmark | command | ratio | JSON | machine | date |",
        "|---|---|---|---|---|---|",
    ]
    for item in items:
        kinds = dict.fromkeys(r.kind for r in item.rows)
        spans = [f"{_span([r for r in item.rows if r.kind == k])} ({k})" for k in kinds]
        cells = (
            f"[{item.bench.title}](#{item.bench.key})",
            f"`{item.bench.command}`",
            ", ".join(spans),
            _source(item),
            item.machine,
            item.date,
        )
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def render_blocks(items: list[Loaded], chart: str = CHART, page: str = PAGE) -> dict[str, str]:
    """Every generated block by name: the summary and one per benchmark."""
    blocks = {SUMMARY: render_summary(items, chart, page)}
    blocks.update({item.bench.key: render_block(item) for item in items})
    return blocks


BLOCK = re.compile(
    r"(<!-- generated:begin (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- generated:end (?P=name) -->)",
    re.DOTALL,
)


def update_page(text: str, blocks: dict[str, str], titles: dict[str, str] | None = None) -> str:
    """``text`` with each generated block's body replaced by ``blocks[name]``; blocks the page
    lacks are appended under a ``##`` heading (``titles[name]``, else the name). A block in the
    page that ``blocks`` does not have is an error."""
    seen = []

    def replace(m: re.Match) -> str:
        name = m["name"]
        if name not in blocks:
            raise ReportError(f"the page has a generated block '{name}' that nothing declares")
        seen.append(name)
        return m.group(1) + blocks[name] + m.group(4)

    text = BLOCK.sub(replace, text)
    for name, body in blocks.items():
        if name not in seen:
            title = (titles or {}).get(name, name)
            text = text.rstrip("\n") + (
                f"\n\n## {title}\n\n<!-- generated:begin {name} -->\n{body}"
                f"<!-- generated:end {name} -->\n"
            )
    return text


def first_difference(old: str, new: str) -> str:
    """Where two page texts first differ, as "line N: '<old line>'" (for a one-line message)."""
    a, b = old.splitlines(), new.splitlines()
    for i, (x, y) in enumerate(zip(a, b, strict=False), 1):
        if x != y:
            return f"line {i}: {x[:80]!r}"
    return f"line {min(len(a), len(b)) + 1}: length differs"


def generate(root: Path, page: str = PAGE, chart: str = CHART) -> tuple[str, str, list[Loaded]]:
    """(the page as committed, the page as the JSONs give it, the loaded benchmarks)."""
    path = Path(root) / page
    try:
        old = path.read_text()
    except FileNotFoundError:
        raise ReportError(f"page not found: {page}") from None
    items = load_all(Path(root))
    titles = {b.key: b.title for b in BENCHMARKS}
    blocks = render_blocks(items, str(Path(root) / chart), str(path))
    return old, update_page(old, blocks, titles), items


def check(root: Path, page: str = PAGE, chart: str = CHART) -> str | None:
    """None if the page agrees with the JSONs, else a one-line description of the difference."""
    old, new, _ = generate(root, page, chart)
    if old == new:
        return None
    return (
        f"{page} differs from the bench JSONs at {first_difference(old, new)}; "
        "regenerate it with `equijax bench report`"
    )


def write(root: Path, page: str = PAGE, chart: str = CHART) -> bool:
    """Regenerate the page's blocks and the chart; True if the page changed."""
    from equijax.bench.report_chart import plot_ratios

    old, new, items = generate(root, page, chart)
    if new != old:
        (Path(root) / page).write_text(new)
    plot_ratios(items, Path(root) / chart)
    return new != old
