"""The memory-mapped graph cache (`equijax.graphs.cache`)."""

from __future__ import annotations

import logging

import ase
import ase.build
import numpy as np
import pytest

import equijax.graphs.cache as cache_module
from equijax.graphs import GraphCache, IsolatedAtomError, atoms_to_graph, graph_counts


def _structures(bench_structures):
    slab = ase.build.fcc111("Cu", (2, 2, 2), vacuum=4.0)
    slab.rattle(0.02, seed=4)
    tiny = ase.Atoms(
        "Li",
        positions=[[0.1, -0.3, 0.2]],
        cell=[[2.5, 0, 0], [0.4, 2.4, 0], [0.2, 0.3, 2.6]],
        pbc=True,
    )
    return [bench_structures[1], bench_structures[29], ase.build.molecule("CH3CH2OH"), slab, tiny]


def _isolated():
    return ase.Atoms(
        "Cu2",
        positions=[[1, 1, 1], [11, 1, 1]],
        cell=[30, 30, 30],
        pbc=False,
        info={"id": "lonely"},
    )


@pytest.fixture(scope="module")
def structures(bench_structures):
    """Five small structures: two crystals, a molecule, a slab and a one-atom tiny cell."""
    return _structures(bench_structures)


@pytest.fixture(scope="module")
def built(structures, tmp_path_factory):
    """A cache built once for the module, and its path."""
    path = tmp_path_factory.mktemp("cache") / "graphs"
    return GraphCache.build(structures, path, progress=False), path


def _assert_matches_fresh(
    cache, structures, graphs_identical, cutoff=6.0, bond_cutoff=3.0, indices=None
):
    indices = list(range(len(structures))) if indices is None else indices
    assert len(cache) == len(indices)
    for slot, index in enumerate(indices):
        fresh = atoms_to_graph(structures[index], cutoff, bond_cutoff)
        graphs_identical(cache[slot], fresh, context=f"graph {slot} (structure {index}): ")


def test_cache_equals_fresh_graphs(built, structures, graphs_identical):
    """cache[i] equals atoms_to_graph(structures[i]): every array, shape and dtype."""
    cache, _ = built
    _assert_matches_fresh(cache, structures, graphs_identical)
    np.testing.assert_array_equal(cache.source_indices, np.arange(len(structures)))
    assert cache.dropped == []


def test_negative_index_and_out_of_range(built, structures, graphs_identical):
    """cache[-1] is the last graph; an index past the end raises IndexError."""
    cache, _ = built
    graphs_identical(cache[-1], atoms_to_graph(structures[-1]))
    with pytest.raises(IndexError):
        cache[len(structures)]
    with pytest.raises(IndexError):
        cache[-len(structures) - 1]


def test_cache_graph_counts(built, structures):
    """cache.graph_counts() equals graph_counts of freshly built graphs."""
    cache, _ = built
    fresh = [atoms_to_graph(a) for a in structures]
    np.testing.assert_array_equal(cache.graph_counts(), graph_counts(fresh))


def test_reopen_existing_cache(built, structures, graphs_identical):
    """GraphCache(path) opens the cache with the same content; a wrong cutoff is refused."""
    _, path = built
    _assert_matches_fresh(GraphCache(path), structures, graphs_identical)
    with pytest.raises(ValueError, match="cutoff"):
        GraphCache(path, cutoff=5.0)


def test_second_build_reuses_cache(built, structures, monkeypatch, graphs_identical):
    """Building again on the same structures and cutoffs reuses the files: no graph is rebuilt."""
    _, path = built
    mtime = (path / "meta.json").stat().st_mtime_ns

    def forbidden(*args, **kwargs):
        raise AssertionError("atoms_to_graph called although the cache is complete")

    monkeypatch.setattr(cache_module, "atoms_to_graph", forbidden)
    cache = GraphCache.build(structures, path, progress=False)
    assert (path / "meta.json").stat().st_mtime_ns == mtime
    monkeypatch.undo()
    _assert_matches_fresh(cache, structures, graphs_identical)


def test_different_cutoff_rebuilds(structures, tmp_path, graphs_identical):
    """A build with other cutoffs on an existing cache rebuilds it with the new cutoffs."""
    path = tmp_path / "c"
    GraphCache.build(structures, path, progress=False)
    cache = GraphCache.build(structures, path, cutoff=5.0, bond_cutoff=2.5, progress=False)
    assert cache.cutoff == 5.0 and cache.bond_cutoff == 2.5
    _assert_matches_fresh(cache, structures, graphs_identical, cutoff=5.0, bond_cutoff=2.5)


def test_different_structures_rebuild(structures, tmp_path, graphs_identical):
    """A build on changed structures (one atom moved, one structure fewer) rebuilds the cache."""
    path = tmp_path / "c"
    GraphCache.build(structures, path, progress=False)
    changed = [a.copy() for a in structures[:-1]]
    changed[0].positions[0] += [0.05, -0.02, 0.01]
    cache = GraphCache.build(changed, path, progress=False)
    _assert_matches_fresh(cache, changed, graphs_identical)


def test_truncated_file_is_corruption(structures, tmp_path, graphs_identical):
    """A truncated .bin makes GraphCache(path) raise ValueError about corruption; build() rebuilds."""
    path = tmp_path / "c"
    GraphCache.build(structures, path, progress=False)
    file = path / "positions.bin"
    data = file.read_bytes()
    file.write_bytes(data[:-8])
    with pytest.raises(ValueError, match="corrupt"):
        GraphCache(path)
    cache = GraphCache.build(structures, path, progress=False)
    _assert_matches_fresh(cache, structures, graphs_identical)


def test_missing_meta_is_incomplete(structures, tmp_path, graphs_identical):
    """Without meta.json (an interrupted build) opening fails and build() rebuilds."""
    path = tmp_path / "c"
    GraphCache.build(structures, path, progress=False)
    (path / "meta.json").unlink()
    with pytest.raises(FileNotFoundError):
        GraphCache(path)
    _assert_matches_fresh(
        GraphCache.build(structures, path, progress=False), structures, graphs_identical
    )


def test_drop_isolated_records_dropped(structures, tmp_path, graphs_identical, caplog):
    """drop_isolated=True skips the isolated structure, lists its input index, warns; others are cached."""
    with_isolated = [structures[0], _isolated(), structures[1], structures[2]]
    with caplog.at_level(logging.WARNING, logger="equijax.graphs"):
        cache = GraphCache.build(with_isolated, tmp_path / "c", drop_isolated=True, progress=False)
    assert [index for index, _ in cache.dropped] == [1]
    assert "lonely" in cache.dropped[0][1]
    np.testing.assert_array_equal(cache.source_indices, [0, 2, 3])
    _assert_matches_fresh(cache, with_isolated, graphs_identical, indices=[0, 2, 3])
    assert any(r.levelno == logging.WARNING for r in caplog.records)
    # the record survives reopening
    assert [index for index, _ in GraphCache(tmp_path / "c").dropped] == [1]


def test_all_dropped_gives_empty_cache(tmp_path):
    """A cache whose every structure is dropped opens with length 0."""
    cache = GraphCache.build(
        [_isolated(), _isolated()], tmp_path / "c", drop_isolated=True, progress=False
    )
    assert len(cache) == 0
    assert [index for index, _ in cache.dropped] == [0, 1]
    assert len(GraphCache(tmp_path / "c")) == 0


def test_isolated_raises_without_drop(structures, tmp_path):
    """drop_isolated=False raises IsolatedAtomError naming the structure, and leaves no cache behind."""
    path = tmp_path / "c"
    with pytest.raises(IsolatedAtomError, match="lonely"):
        GraphCache.build([structures[0], _isolated()], path, progress=False)
    assert not (path / "meta.json").exists()
