"""An on-disk training dataset (``equijax data build``): graphs in a `GraphCache` plus label
arrays, ids, groups and statistics, opened in milliseconds whatever its size. Every read is a
positional read into a new array (`DiskArray`), so nothing of the files stays resident.

Layout of a dataset directory::

    dataset.json       format, cutoffs, structure count, source, statistics, every file's size
                       and SHA-256; written last (a directory without it is not a dataset)
    graphs/            a `GraphCache` (meta.json, counts.bin, <field>.bin)
    energy.bin         float64 (G,) eV (0 where missing)
    stress.bin         float32 (G, 3, 3) GPa, CHGNet/ASE sign
    forces.bin         float32 (A, 3) eV/Å, A = total atoms, in structure order
    magmoms.bin        float32 (A,) μB
    has.bin            uint8 (G, 4): 1 where energy, forces, stress, magmoms are present
    id_offsets.bin     int64 (G + 1,) byte offsets of each id in ids.bin (UTF-8)
    group_index.bin    int32 (G,) index of each structure's group in groups.json
    groups.json        the distinct group names (e.g. mp-ids)
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import NamedTuple

import ase
import numpy as np

from equijax.data.structures import LabeledStructure
from equijax.graphs.cache import GraphCache
from equijax.graphs.disk_array import DiskArray

DATASET_FORMAT = 1
LABELS = ("energy", "forces", "stress", "magmoms")
# file -> (dtype, trailing shape, rows: "structures", "atoms" or "structures+1")
FILES = {
    "energy": (np.float64, (), "structures"),
    "stress": (np.float32, (3, 3), "structures"),
    "forces": (np.float32, (3,), "atoms"),
    "magmoms": (np.float32, (), "atoms"),
    "has": (np.uint8, (4,), "structures"),
    "id_offsets": (np.int64, (), "structures+1"),
    "group_index": (np.int32, (), "structures"),
}


class StoredStructure(NamedTuple):
    """One structure's labels as `LabeledStructure` holds them (a missing label is None):
    energy eV, forces (N, 3) eV/Å, stress (3, 3) GPa, magmoms (N,) μB."""

    id: str
    group: str
    n_atoms: int
    energy: float | None
    forces: np.ndarray | None
    stress: np.ndarray | None
    magmoms: np.ndarray | None


def is_dataset(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory holding a built dataset (its ``dataset.json``)."""
    return (Path(path) / "dataset.json").is_file()


def file_sha256(path: Path, block: int = 1 << 22) -> str:
    """SHA-256 (hex) of a file, read in blocks of ``block`` bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


class DiskDataset:
    """A built dataset, read on demand: ``len(ds)`` structures, ``ds.graphs[i]`` the graph,
    ``ds.labels(i)`` the labels, ``ds.sizes`` (G, 4) atoms/edges/bonds/angles per structure.

    Opening checks the format and every file's size against ``dataset.json`` (a truncated or
    half-written dataset raises `ValueError`); `verify` also checks the content hashes.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        meta_file = self.path / "dataset.json"
        if not meta_file.is_file():
            raise FileNotFoundError(
                f"{self.path}: not a built dataset (no dataset.json); build one with "
                "`equijax data build SOURCE OUT` (an interrupted build resumes when rerun)"
            )
        try:
            self.meta = json.loads(meta_file.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{meta_file} is corrupted: {err}") from None
        if self.meta.get("format") != DATASET_FORMAT:
            raise ValueError(f"{self.path}: dataset format {self.meta.get('format')} != 1")
        for name, size in self.meta["files"].items():
            file = self.path / name
            actual = file.stat().st_size if file.exists() else None
            if actual != size:
                raise ValueError(
                    f"{self.path}: {name} has {actual} bytes, expected {size}: a corrupted "
                    "or incomplete dataset (rebuild it with `equijax data build`)"
                )
        self.graphs = GraphCache(self.path / "graphs")
        n = len(self.graphs)
        if n != self.meta["n_structures"]:
            raise ValueError(f"{self.path}: {n} graphs but {self.meta['n_structures']} structures")
        counts = self.graphs.counts
        self.n_atoms = counts[:, 0].copy()
        self._atom_start = np.concatenate([[0], np.cumsum(self.n_atoms)[:-1]])
        total_atoms = int(self.n_atoms.sum())
        rows = {"structures": n, "atoms": total_atoms, "structures+1": n + 1}
        self._arrays = {
            name: _map(self.path / f"{name}.bin", dtype, (rows[kind], *trailing))
            for name, (dtype, trailing, kind) in FILES.items()
        }
        self.group_names: list[str] = json.loads((self.path / "groups.json").read_text())
        self._ids = _map(self.path / "ids.bin", np.uint8, (int(self._arrays["id_offsets"][-1]),))

    def __len__(self) -> int:
        return self.meta["n_structures"]

    @property
    def cutoff(self) -> float:
        """Atom-graph cutoff, Å."""
        return self.graphs.cutoff

    @property
    def bond_cutoff(self) -> float:
        """Bond-graph cutoff, Å."""
        return self.graphs.bond_cutoff

    @property
    def stats(self) -> dict:
        """Statistics of the whole dataset, from the build's streaming pass (`dataset_stats`)."""
        return self.meta["stats"]

    @property
    def sizes(self) -> np.ndarray:
        """(G, 4) int64 atoms, directed edges, bonds, angles per structure (no graph loaded)."""
        return self.graphs.counts[:, :4]

    @property
    def group_index(self) -> np.ndarray:
        """(G,) int32 index into `group_names` of each structure's group."""
        return np.asarray(self._arrays["group_index"])

    def id(self, i: int) -> str:
        """The id of structure ``i``."""
        offsets = self._arrays["id_offsets"]
        start, stop = offsets[i : i + 2]
        return self._ids.read(int(start), int(stop)).tobytes().decode()

    def labels(self, i: int) -> StoredStructure:
        """The labels of structure ``i`` (read from the files)."""
        a = self._arrays
        n = int(self.n_atoms[i])
        atoms = slice(int(self._atom_start[i]), int(self._atom_start[i]) + n)
        has = a["has"][i]
        return StoredStructure(
            id=self.id(i),
            group=self.group_names[int(a["group_index"][i])],
            n_atoms=n,
            energy=float(a["energy"][i]) if has[0] else None,
            forces=a["forces"][atoms].astype(np.float64) if has[1] else None,
            stress=a["stress"][i].astype(np.float64) if has[2] else None,
            magmoms=a["magmoms"][atoms].astype(np.float64) if has[3] else None,
        )

    def structure(self, i: int) -> LabeledStructure:
        """Structure ``i`` as a `LabeledStructure` (atoms rebuilt from the cached graph)."""
        g = self.graphs[i].atoms
        atoms = ase.Atoms(
            numbers=g.nodes["numbers"],
            positions=g.nodes["positions"],
            cell=g.globals["cell"][0],
            pbc=g.globals["pbc"][0],
        )
        s = self.labels(i)
        return LabeledStructure(s.id, atoms, s.energy, s.forces, s.stress, s.magmoms, group=s.group)

    def verify(self) -> None:
        """Check every file's SHA-256 against ``dataset.json`` (reads the whole dataset);
        raises `ValueError` naming the first file that differs."""
        for name, digest in self.meta["sha256"].items():
            if file_sha256(self.path / name) != digest:
                raise ValueError(f"{self.path}: {name} does not match its SHA-256: corrupted")


class LabelView:
    """A sequence of `StoredStructure` over ``indices`` of a dataset (a split), read lazily."""

    def __init__(self, dataset: DiskDataset, indices: np.ndarray):
        self.dataset, self.indices = dataset, np.asarray(indices, np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> StoredStructure:
        return self.dataset.labels(int(self.indices[k]))


class GraphView:
    """A sequence of the cached graphs of ``indices`` of a dataset (a split), read lazily."""

    def __init__(self, dataset: DiskDataset, indices: np.ndarray):
        self.dataset, self.indices = dataset, np.asarray(indices, np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        return self.dataset.graphs[int(self.indices[k])]


def _map(file: Path, dtype, shape) -> DiskArray:
    return DiskArray(file, dtype, shape)
