"""Every ```python block in README.md and docs/**/*.md runs (blocks of one file share a namespace).

Blocks fenced as ```py are scripts meant for another setting (e.g. a multi-host launcher that calls
`jax.distributed.initialize`): they are only compiled, so at least their syntax is checked.
"""

import re
from pathlib import Path

import pytest

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
            raise AssertionError(f"{_name(page)} block {i} failed: {type(err).__name__}: {err}") from err


@pytest.mark.parametrize("page", [p for p in PAGES if SCRIPT.search(p.read_text())], ids=_name)
def test_script_blocks_compile(page):
    for i, code in enumerate(SCRIPT.findall(page.read_text())):
        compile(code, f"{_name(page)}[script {i}]", "exec")
