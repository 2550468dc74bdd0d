"""An on-disk graph cache: a dataset's graphs are built once, streamed to flat binary arrays, and
read back a graph at a time with positional reads (`DiskArray`: no pickles, no per-graph files,
no memory maps that would stay resident).

Layout of a cache directory::

    meta.json          format, cutoffs, number of graphs, content hash, dtype/shape of each field
    counts.bin         int64 (G, 5): atoms, edges, bonds, angles, pairs per graph
    <field>.bin        every field of all graphs concatenated, indices local to each graph

``meta.json`` is written last, so a directory without it is an interrupted build and is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import ase
import jraph
import numpy as np
from tqdm.auto import tqdm

from equijax.graphs.build import DEFAULT_BOND_CUTOFF, DEFAULT_CUTOFF, atoms_to_graph
from equijax.graphs.crystal_graph import CrystalGraph
from equijax.graphs.disk_array import DiskArray
from equijax.graphs.validation import IsolatedAtomError, StructureLabel

FORMAT_VERSION = 1

# field name -> (stored dtype, trailing shape, count column it is concatenated along)
_FIELDS = {
    "numbers": (np.uint8, (), 0),
    "positions": (np.float64, (3,), 0),
    "senders": (np.int32, (), 1),
    "receivers": (np.int32, (), 1),
    "shift": (np.int16, (3,), 1),
    "pair": (np.int32, (), 1),
    "bond_edge": (np.int32, (), 2),
    "bond_pair": (np.int32, (), 2),
    "angle_center": (np.int32, (), 3),
    "angle_edge_ij": (np.int32, (), 3),
    "angle_edge_ik": (np.int32, (), 3),
    "angle_senders": (np.int32, (), 3),
    "angle_receivers": (np.int32, (), 3),
    "cell": (np.float64, (3, 3), None),
    "pbc": (np.bool_, (3,), None),
    "source_index": (np.int64, (), None),
}


def _flatten(graph: CrystalGraph) -> dict[str, np.ndarray]:
    a, b = graph.atoms, graph.bonds
    if np.abs(a.edges["shift"]).max(initial=0) > np.iinfo(np.int16).max:
        raise ValueError("periodic shift does not fit the cache's int16 storage")
    return {
        "numbers": a.nodes["numbers"],
        "positions": a.nodes["positions"],
        "senders": a.senders,
        "receivers": a.receivers,
        "shift": a.edges["shift"],
        "pair": a.edges["pair"],
        "bond_edge": b.nodes["edge"],
        "bond_pair": b.nodes["pair"],
        "angle_center": b.edges["center"],
        "angle_edge_ij": b.edges["edge_ij"],
        "angle_edge_ik": b.edges["edge_ik"],
        "angle_senders": b.senders,
        "angle_receivers": b.receivers,
        "cell": a.globals["cell"][0],
        "pbc": a.globals["pbc"][0],
    }


FILES = (*_FIELDS, "counts")  # the .bin files of a cache directory


def write_graph(files: dict, graph: CrystalGraph, source_index: int) -> np.ndarray:
    """Append one single-graph ``graph`` to open binary ``files`` (one per name of `FILES`, as in a
    cache directory); returns its counts row (5,) int64: atoms, edges, bonds, angles, pairs."""
    fields = _flatten(graph)
    fields["source_index"] = np.array(source_index)
    for name, (dtype, _, _) in _FIELDS.items():
        files[name].write(np.ascontiguousarray(fields[name], dtype=dtype).tobytes())
    s = graph.sizes
    counts = np.array(
        [s.n_node, s.n_edge, s.n_bond, s.n_angle, int(graph.atoms.globals["n_pairs"][0])], np.int64
    )
    files["counts"].write(counts.tobytes())
    return counts


def content_hash(structures: Sequence[ase.Atoms]) -> str:
    """SHA-256 over numbers, positions, cell and pbc of every structure."""
    h = hashlib.sha256()
    for atoms in structures:
        for arr in (atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc):
            h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


class GraphCache(Sequence):
    """On-disk crystal graphs; ``cache[i]`` is a single-graph `CrystalGraph` read from the files
    into new arrays (only ``counts``, (G, 5) int64, is held in memory).

    Build (or reuse) with `GraphCache.build`, open an existing one with `GraphCache(path)`.
    """

    def __init__(
        self, path: str | os.PathLike, cutoff: float | None = None, bond_cutoff: float | None = None
    ):
        self.path = Path(path)
        meta_file = self.path / "meta.json"
        try:
            self.meta = json.loads(meta_file.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{self.path} is not a complete graph cache (no meta.json)"
            ) from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{meta_file} is corrupted: {err}") from None
        if self.meta.get("format") != FORMAT_VERSION:
            raise ValueError(
                f"{self.path}: cache format {self.meta.get('format')} != {FORMAT_VERSION}"
            )
        for name, want in (("cutoff", cutoff), ("bond_cutoff", bond_cutoff)):
            if want is not None and self.meta[name] != want:
                raise ValueError(f"{self.path} was built with {name}={self.meta[name]}, not {want}")
        n = self.meta["n_graphs"]
        self.counts = np.asarray(self._map("counts", np.int64, (n, 5)))
        totals = self.counts.sum(axis=0)
        self._starts = np.concatenate([np.zeros((1, 5), np.int64), np.cumsum(self.counts, 0)[:-1]])
        self._arrays = {}
        for name, (dtype, trailing, column) in _FIELDS.items():
            rows = n if column is None else int(totals[column])
            self._arrays[name] = self._map(name, dtype, (rows, *trailing))

    def _map(self, name, dtype, shape) -> DiskArray:
        file = self.path / f"{name}.bin"
        try:
            return DiskArray(file, dtype, shape)
        except ValueError as err:
            raise ValueError(f"{err} cache") from None

    @property
    def cutoff(self) -> float:
        return self.meta["cutoff"]

    @property
    def bond_cutoff(self) -> float:
        return self.meta["bond_cutoff"]

    @property
    def source_indices(self) -> np.ndarray:
        """Index in the input structures of each cached graph."""
        return np.asarray(self._arrays["source_index"])

    @property
    def dropped(self) -> list[tuple[int, str]]:
        """(input index, reason) of structures dropped at build time."""
        return [tuple(x) for x in self.meta.get("dropped", [])]

    def graph_counts(self) -> np.ndarray:
        """(G, 3) atoms, edges, angles per graph, for `CostModel` without loading graphs."""
        return self.counts[:, [0, 1, 3]].astype(np.float64)

    def __len__(self) -> int:
        return self.meta["n_graphs"]

    def __getitem__(self, index: int) -> CrystalGraph:
        if not -len(self) <= index < len(self):
            raise IndexError(f"graph {index} out of range for cache of {len(self)}")
        index %= len(self)
        start, count = self._starts[index], self.counts[index]

        def get(name):
            dtype, _, column = _FIELDS[name]
            arr = self._arrays[name]
            if column is None:
                return arr[index]
            return arr.read(int(start[column]), int(start[column] + count[column]))

        n_atoms = int(count[0])
        cell = get("cell")
        atom_graph = jraph.GraphsTuple(
            nodes={"numbers": get("numbers").astype(np.int32), "positions": get("positions")},
            edges={"shift": get("shift").astype(np.int32), "pair": get("pair")},
            senders=get("senders"),
            receivers=get("receivers"),
            globals={
                "cell": cell[None],
                "volume": np.array([abs(np.linalg.det(cell))]),
                "n_atoms": np.array([n_atoms], np.int32),
                "pbc": get("pbc")[None],
                "n_pairs": np.array([count[4]], np.int32),
            },
            n_node=np.array([n_atoms], np.int32),
            n_edge=np.array([count[1]], np.int32),
        )
        bond_graph = jraph.GraphsTuple(
            nodes={"edge": get("bond_edge"), "pair": get("bond_pair")},
            edges={
                "center": get("angle_center"),
                "edge_ij": get("angle_edge_ij"),
                "edge_ik": get("angle_edge_ik"),
            },
            senders=get("angle_senders"),
            receivers=get("angle_receivers"),
            globals=None,
            n_node=np.array([count[2]], np.int32),
            n_edge=np.array([count[3]], np.int32),
        )
        return CrystalGraph(atoms=atom_graph, bonds=bond_graph)

    @classmethod
    def build(
        cls,
        structures: Sequence[ase.Atoms],
        path: str | os.PathLike,
        cutoff: float = DEFAULT_CUTOFF,
        bond_cutoff: float = DEFAULT_BOND_CUTOFF,
        *,
        drop_isolated: bool = False,
        progress: bool = True,
    ) -> GraphCache:
        """Build the cache at ``path``, or open it if it already holds these structures.

        A complete cache with the same cutoffs and content hash is reused as-is; anything else
        at ``path`` (an interrupted build, other structures, other cutoffs) is rebuilt. With
        ``drop_isolated``, structures with isolated atoms are skipped and listed in
        ``cache.dropped``; otherwise they raise.
        """
        path = Path(path)
        digest = content_hash(structures)
        if (path / "meta.json").exists():
            try:
                cache = cls(path, cutoff, bond_cutoff)
                if cache.meta.get("content_hash") == digest:
                    return cache
            except (ValueError, FileNotFoundError):
                pass
        tmp = path.with_name(path.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        files = {name: open(tmp / f"{name}.bin", "wb") for name in FILES}
        dropped, n_graphs = [], 0
        try:
            for index, atoms in enumerate(
                tqdm(structures, disable=not progress, desc="graph cache", unit="struct")
            ):
                try:
                    graph = atoms_to_graph(
                        atoms, cutoff, bond_cutoff, label=StructureLabel(atoms, index)
                    )
                except IsolatedAtomError as err:
                    if not drop_isolated:
                        raise
                    dropped.append((index, str(err)))
                    continue
                write_graph(files, graph, index)
                n_graphs += 1
        finally:
            for f in files.values():
                f.close()
        meta = {
            "format": FORMAT_VERSION,
            "cutoff": cutoff,
            "bond_cutoff": bond_cutoff,
            "n_graphs": n_graphs,
            "content_hash": digest,
            "dropped": dropped,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
        if dropped:
            logging.getLogger(__name__).warning(
                "graph cache %s: dropped %d structure(s) with isolated atoms: indices %s",
                path,
                len(dropped),
                [i for i, _ in dropped][:20],
            )
        return cls(path, cutoff, bond_cutoff)
