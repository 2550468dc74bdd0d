"""Every ```python block in README.md and docs/**/*.md runs (blocks of one file share a namespace).

Blocks fenced as ```py are scripts meant for another setting (e.g. a multi-host launcher that calls
`jax.distributed.initialize`): they are only compiled, so at least their syntax is checked.
"""

import re
from pathlib import Path

import pytest

# jax_disable_most_optimizations (XLA backend -O0): about half the compile time; results agree
# to rounding (the tolerances here are far above it)
pytestmark = pytest.mark.usefixtures("fast_compiles")


ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
SCRIPT = re.compile(r"```py\n(.*?)```", re.DOTALL)


def _name(page: Path) -> str:
    return str(page.relative_to(DOCS)) if page.is_relative_to(DOCS) else page.name


@pytest.mark.parametrize("page", [p for p in PAGES if BLOCK.search(p.read_text())], ids=_name)
def test_code_blocks_run(page):
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for i, code in enumerate(BLOCK.findall(page.read_text())):
        try:
            exec(compile(code, f"{_name(page)}[block {i}]", "exec"), namespace)  # noqa: S102
        except Exception as err:
            raise AssertionError(
                f"{_name(page)} block {i} failed: {type(err).__name__}: {err}"
            ) from err


@pytest.mark.parametrize("page", [p for p in PAGES if SCRIPT.search(p.read_text())], ids=_name)
def test_script_blocks_compile(page):
    for i, code in enumerate(SCRIPT.findall(page.read_text())):
        compile(code, f"{_name(page)}[script {i}]", "exec")


SHELL = re.compile(r"```bash\n(.*?)```", re.DOTALL)


def _shell_commands(block: str) -> list[list[str]]:
    """The ``equijax ...`` and ``make ...`` command lines of a bash block, as argv lists."""
    import shlex

    text = block.replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        argv = shlex.split(line, comments=True)
        if argv and argv[0] in ("equijax", "make"):
            out.append(argv)
    return out


@pytest.mark.parametrize("page", [p for p in PAGES if SHELL.search(p.read_text())], ids=_name)
def test_shell_blocks_parse_and_resolve(page, monkeypatch):
    """Every ``equijax`` command in a bash block parses with the real CLI; ``train`` commands
    resolve their config and ``sweep`` commands every point's config (what ``--dry-run`` does);
    ``make`` targets exist. Long runs (training, benchmarks) are not started."""
    from equijax.cli import build_parser
    from equijax.sweep import expand, load_spec
    from equijax.sweep.runner import resolved_config
    from equijax.training.config import load_config

    monkeypatch.chdir(ROOT)  # commands name repository paths (experiments/...)
    targets = set(re.findall(r"^([a-z]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    for block in SHELL.findall(page.read_text()):
        for argv in _shell_commands(block):
            where = f"{_name(page)}: {' '.join(argv)}"
            if argv[0] == "make":
                assert set(argv[1:]) <= targets, where
                continue
            try:
                args = build_parser().parse_args(argv[1:])
            except SystemExit as err:
                raise AssertionError(f"{where} does not parse") from err
            if args.command == "train":
                load_config(args.config, args.overrides)
            elif args.command == "sweep" and not args.collect_only:
                spec = load_spec(
                    args.config,
                    grid=args.grid,
                    zip_axes=args.zip,
                    overrides=args.overrides,
                    dir=args.dir,
                    task=args.task,
                )
                for point in expand(spec):
                    resolved_config(spec, point, ROOT / "runs" / "never-written" / point.name)
