"""`equijax data build` datasets against the in-memory readers and graph builder they replace:
same graphs, labels, ids and groups; a killed build resumes to the same bytes; parallel workers
write the same dataset; damage is detected on open; malformed structures are named."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from equijax.data import generate_emt_dataset, read_ase, read_ase_db, write_ase_db, write_extxyz
from equijax.graphs import atoms_to_graph
from equijax.graphs import dataset_build as builder
from equijax.graphs.dataset import DiskDataset
from equijax.graphs.dataset_build import build_dataset

CUTOFFS = dict(cutoff=5.0, bond_cutoff=3.0)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataset")
    structures = generate_emt_dataset(20, seed=5, progress=False)
    structures[3].forces = None  # a missing label
    structures[5].stress = None
    write_extxyz(structures, root / "s.extxyz")
    return root / "s.extxyz"


@pytest.fixture(scope="module")
def built(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("built") / "ds"
    return build_dataset(source, out, part_size=6, progress=False, **CUTOFFS)


def _files(path):
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_matches_reader_and_graph_builder(built, source, graphs_identical):
    want = read_ase(source)
    assert len(built) == len(want)
    for i, w in enumerate(want):
        graphs_identical(built.graphs[i], atoms_to_graph(w.atoms, **CUTOFFS), f"graph {i}: ")
        got = built.labels(i)
        assert (got.id, got.group, got.n_atoms) == (w.id, w.group, len(w.atoms))
        assert (got.forces is None, got.stress is None) == (w.forces is None, w.stress is None)
        np.testing.assert_array_equal(got.energy, w.energy)
        if w.forces is not None:
            np.testing.assert_allclose(got.forces, w.forces, rtol=1e-6, atol=1e-7)
        assert got.magmoms is None
        s = built.structure(i)
        np.testing.assert_array_equal(s.atoms.positions, w.atoms.positions)
    sizes = [atoms_to_graph(w.atoms, **CUTOFFS).sizes[:4] for w in want]
    np.testing.assert_array_equal(built.sizes, sizes)
    built.verify()


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux /proc")
def test_reads_leave_no_file_mapped(built):
    """Reading every graph and label maps none of the dataset's files into the process (mapped
    pages would count in its RSS and grow with the number of structures read)."""
    for i in range(len(built)):
        built.graphs[i], built.labels(i), built.structure(i)
    with open("/proc/self/maps") as maps:
        mapped = [line for line in maps if str(built.path) in line]
    assert mapped == []


def test_ase_db_source(built, source, tmp_path):
    db = tmp_path / "s.db"
    write_ase_db(read_ase(source), db)
    ds = build_dataset(db, tmp_path / "db", part_size=100, progress=False, **CUTOFFS)
    assert [ds.id(i) for i in range(len(ds))] == [s.id for s in read_ase_db(db)]
    np.testing.assert_array_equal(ds.sizes, built.sizes)


def test_killed_build_resumes_to_the_same_bytes(built, source, tmp_path, monkeypatch):
    out = tmp_path / "ds"
    real_write = builder.write_part
    calls = []

    def write_then_die(part_dir, items, base, *args):
        if base >= 12:  # parts 0 and 1 finish, then the "kill"
            raise KeyboardInterrupt
        calls.append(base)
        return real_write(part_dir, items, base, *args)

    monkeypatch.setattr(builder, "write_part", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        build_dataset(source, out, part_size=6, progress=False, **CUTOFFS)
    assert not out.exists() and calls == [0, 6]
    calls.clear()
    monkeypatch.setattr(
        builder,
        "write_part",
        lambda d, items, base, *a: calls.append(base) or real_write(d, items, base, *a),
    )
    resumed = build_dataset(source, out, part_size=6, progress=False, **CUTOFFS)
    assert calls == [12, 18]  # the finished parts were not built again
    assert _files(resumed.path) == _files(built.path)
    # a rerun on the finished dataset opens it
    assert build_dataset(source, out, part_size=6, progress=False, **CUTOFFS).path == out


def test_parallel_workers_write_the_same_dataset(built, source, tmp_path):
    ds = build_dataset(source, tmp_path / "p", part_size=6, workers=2, progress=False, **CUTOFFS)
    assert _files(ds.path) == _files(built.path)


def test_damage_is_detected(built, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(built.path, copy)
    forces = copy / "forces.bin"
    data = bytearray(forces.read_bytes())
    data[5] ^= 0xFF
    forces.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="forces.bin does not match"):
        DiskDataset(copy).verify()
    forces.write_bytes(bytes(data[:-4]))
    with pytest.raises(ValueError, match="forces.bin has"):
        DiskDataset(copy)
    (copy / "dataset.json").unlink()
    with pytest.raises(FileNotFoundError, match="not a built dataset"):
        DiskDataset(copy)


def test_malformed_structures_named(tmp_path):
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    good = Atoms(
        "Cu4", positions=np.random.default_rng(0).uniform(0, 3.6, (4, 3)), cell=[3.6] * 3, pbc=True
    )
    good.calc = SinglePointCalculator(good, energy=-1.0)
    isolated = Atoms("Cu2", positions=[[0, 0, 0], [9, 9, 9]], cell=[20] * 3, pbc=True)
    isolated.info["id"] = "lonely"
    path = tmp_path / "bad.extxyz"
    import ase.io

    ase.io.write(path, [good, isolated, good])
    with pytest.raises(ValueError, match="1 malformed.*lonely"):
        build_dataset(path, tmp_path / "out", progress=False, **CUTOFFS)
    ds = build_dataset(path, tmp_path / "out", skip_malformed=True, progress=False, **CUTOFFS)
    assert len(ds) == 2 and list(ds.meta["malformed"]) == ["lonely"]
    assert json.loads((ds.path / "graphs" / "meta.json").read_text())["dropped"][0][0] == 1


@pytest.mark.parametrize("where", ["copyfileobj", "rmtree"])
def test_killed_merge_resumes_to_the_same_bytes(built, source, tmp_path, monkeypatch, where):
    """Killed while a part is half appended (copyfileobj), or after a part is in but before it
    is deleted (rmtree): the rerun truncates to the recorded lengths and ends identical."""
    real = getattr(shutil, where)
    calls = []

    def dies(*args, **kwargs):
        calls.append(args[0])
        if (where == "copyfileobj" and len(calls) == 30) or str(args[0]).endswith("parts/000001"):
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    out = tmp_path / "ds"
    monkeypatch.setattr(builder.shutil, where, dies)
    with pytest.raises(KeyboardInterrupt):
        build_dataset(source, out, part_size=6, progress=False, **CUTOFFS)
    monkeypatch.setattr(builder.shutil, where, real)
    assert not out.exists()
    resumed = build_dataset(source, out, part_size=6, progress=False, **CUTOFFS)
    assert _files(resumed.path) == _files(built.path)
