"""The import structure: no import cycle between equijax modules (the layers themselves are
checked by import-linter's contract in pyproject.toml, which `make test` runs)."""

from __future__ import annotations

import grimp


def import_cycles(package: str = "equijax") -> list[list[str]]:
    """Every cycle of module imports in ``package`` as a chain ``[a, b, ..., a]``, one per
    directly imported module that imports its importer back (found with grimp)."""
    graph = grimp.build_graph(package)
    cycles, seen = [], set()
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back and frozenset(back) not in seen:
                seen.add(frozenset(back))
                cycles.append([importer, *back])
    return cycles


def test_no_import_cycles():
    cycles = import_cycles()
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    """The check can fail: a two-module package that imports itself in a circle is reported."""
    package = tmp_path / "circular_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from circular_pkg import b\n")
    (package / "b.py").write_text("from circular_pkg import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cycles = import_cycles("circular_pkg")
    assert cycles and {"circular_pkg.a", "circular_pkg.b"} <= set(cycles[0])
