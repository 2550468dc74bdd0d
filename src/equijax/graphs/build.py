"""`ase.Atoms` -> `CrystalGraph`, one structure or a whole dataset."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import NamedTuple

import ase
import jraph
import numpy as np
from tqdm.auto import tqdm

from equijax.graphs.crystal_graph import CrystalGraph
from equijax.graphs.line_graph import bond_graph
from equijax.graphs.neighbors import directed_edges
from equijax.graphs.validation import (
    IsolatedAtomError,
    StructureLabel,
    check_neighbors,
    validate_atoms,
)

logger = logging.getLogger(__name__)

DEFAULT_CUTOFF = 6.0  # Å, CHGNet's atom-graph cutoff
DEFAULT_BOND_CUTOFF = 3.0  # Å, CHGNet's bond-graph cutoff


def atoms_to_graph(
    atoms: ase.Atoms,
    cutoff: float = DEFAULT_CUTOFF,
    bond_cutoff: float = DEFAULT_BOND_CUTOFF,
    *,
    label: str | StructureLabel | None = None,
    n_threads: int = 1,
) -> CrystalGraph:
    """Build the atom graph and CHGNet's bond graph of one structure.

    Args:
        atoms: a periodic crystal (any cell, also smaller than the cutoff, mixed pbc) or a
            molecule (``pbc=False``; the cell may be zero).
        cutoff: atom-graph cutoff, Å.
        bond_cutoff: bond-graph cutoff, Å (must not exceed ``cutoff``).
        label: name used in error messages (default: the id in ``atoms.info`` and the formula).
        n_threads: threads for the neighbour search.

    Returns:
        A `CrystalGraph` holding a single graph, numpy arrays (see `equijax.graphs.crystal_graph`).

    Raises:
        ValueError: empty structure, atomic number outside 1..94, NaN/inf positions or cell,
            singular cell, two atoms at the same position, or an isolated atom (then the
            subclass `IsolatedAtomError`, carrying the isolated indices).
    """
    label = label or StructureLabel(atoms)
    if not 0 < bond_cutoff <= cutoff:
        raise ValueError(f"need 0 < bond_cutoff <= cutoff, got {bond_cutoff=} {cutoff=}")
    validate_atoms(atoms, label)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = np.array(atoms.cell.array, dtype=np.float64)
    positions = np.ascontiguousarray(atoms.positions, dtype=np.float64)
    n_atoms = len(atoms)

    edges = directed_edges(positions, cell, pbc, cutoff, n_threads=n_threads)
    check_neighbors(label, n_atoms, edges.centers, edges.distances, cutoff)
    bonds = bond_graph(edges, bond_cutoff)

    volume = abs(float(np.linalg.det(cell)))  # 0 for a molecule without a cell
    atom_graph = jraph.GraphsTuple(
        nodes={"numbers": atoms.numbers.astype(np.int32), "positions": positions},
        edges={"shift": edges.shifts, "pair": edges.pair},
        senders=edges.neighbors,
        receivers=edges.centers,
        globals={
            "cell": cell[None],
            "volume": np.array([volume]),
            "n_atoms": np.array([n_atoms], dtype=np.int32),
            "pbc": pbc[None],
            "n_pairs": np.array([edges.n_pairs], dtype=np.int32),
        },
        n_node=np.array([n_atoms], dtype=np.int32),
        n_edge=np.array([edges.centers.size], dtype=np.int32),
    )
    bond_graph_tuple = jraph.GraphsTuple(
        nodes={"edge": bonds.bond_edge, "pair": bonds.bond_pair},
        edges={
            "center": bonds.angle_center,
            "edge_ij": bonds.angle_edge_ij,
            "edge_ik": bonds.angle_edge_ik,
        },
        senders=bonds.angle_senders,
        receivers=bonds.angle_receivers,
        globals=None,
        n_node=np.array([bonds.bond_edge.size], dtype=np.int32),
        n_edge=np.array([bonds.angle_center.size], dtype=np.int32),
    )
    return CrystalGraph(atoms=atom_graph, bonds=bond_graph_tuple)


class GraphDataset(NamedTuple):
    """Graphs built from a list of structures, with what was dropped and why."""

    graphs: list[CrystalGraph]
    indices: list[int]  # index in the input of each graph
    dropped: list[tuple[int, str]]  # (input index, reason) of every dropped structure


def build_graphs(
    structures: Iterable[ase.Atoms],
    cutoff: float = DEFAULT_CUTOFF,
    bond_cutoff: float = DEFAULT_BOND_CUTOFF,
    *,
    drop_isolated: bool = False,
    progress: bool = True,
    total: int | None = None,
) -> GraphDataset:
    """Build the graphs of many structures, with a progress bar.

    Any bad structure raises (see `atoms_to_graph`). With ``drop_isolated=True``, structures
    with an isolated atom are dropped instead, and a warning names how many and which; the
    returned `GraphDataset.dropped` lists them too. Nothing is dropped silently.
    """
    graphs, indices, dropped = [], [], []
    if total is None and hasattr(structures, "__len__"):
        total = len(structures)  # type: ignore[arg-type]
    for index, atoms in enumerate(
        tqdm(structures, total=total, disable=not progress, desc="graphs", unit="struct")
    ):
        label = StructureLabel(atoms, index)
        try:
            graphs.append(atoms_to_graph(atoms, cutoff, bond_cutoff, label=label))
        except IsolatedAtomError as err:
            if not drop_isolated:
                raise
            dropped.append((index, str(err)))
            continue
        indices.append(index)
    if dropped:
        shown = ", ".join(str(i) for i, _ in dropped[:20])
        more = "" if len(dropped) <= 20 else f" (+{len(dropped) - 20} more)"
        logger.warning(
            "dropped %d structure(s) with isolated atoms (cutoff %s Å): indices %s%s",
            len(dropped),
            cutoff,
            shown,
            more,
        )
    return GraphDataset(graphs=graphs, indices=indices, dropped=dropped)
