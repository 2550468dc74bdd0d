"""Atom graph and bond graph (angles) of `atoms_to_graph` against the PyTorch CHGNet converter."""

from __future__ import annotations

from collections import Counter

import ase
import ase.build
import numpy as np
import pytest
from chgnet.graph import CrystalGraphConverter
from pymatgen.io.ase import AseAtomsAdaptor

from equijax.graphs import atoms_to_graph

CUTOFF, BOND_CUTOFF = 6.0, 3.0

# Benchmark structures of different prototypes (index: formula): hcp Ti, zinc blende ZnS, rock salt
# LiF, GaAs supercell, bcc W, rock salt MgO, diamond C, bcc Fe.
BENCH_INDICES = [0, 1, 2, 3, 5, 13, 24, 29]


def _extra_structures():
    # bcc Li primitive cell (1 atom): every neighbour is an image of the atom itself. a = 3.3 Å
    # keeps all shells away from the cutoffs (a = 3.0 would put shells exactly at 3 Å and 6 Å).
    li = ase.build.bulk("Li", "bcc", a=3.3)
    one = ase.Atoms(
        "Cu",
        positions=[[0.1, 0.2, 0.3]],
        cell=[[2.5, 0.0, 0.0], [0.3, 2.5, 0.0], [0.2, 0.1, 2.6]],
        pbc=True,
    )
    skewed = ase.Atoms(
        "NaCl",
        scaled_positions=[[0.0, 0.0, 0.0], [0.5, 0.4, 0.6]],
        cell=[[2.8, 0.0, 0.0], [0.9, 2.6, 0.0], [0.5, 0.7, 3.1]],
        pbc=True,
    )
    supercell = ase.build.bulk("Si", "diamond", a=5.43).repeat((2, 2, 2))
    supercell.rattle(0.05, seed=3)
    return [
        ("bcc_Li_primitive", li),
        ("one_atom_2.5A", one),
        ("skewed_NaCl", skewed),
        ("Si_supercell", supercell),
    ]


@pytest.fixture(scope="module")
def converter():
    """CHGNet's graph converter with CHGNet's default cutoffs."""
    return CrystalGraphConverter(atom_graph_cutoff=CUTOFF, bond_graph_cutoff=BOND_CUTOFF)


@pytest.fixture(scope="module")
def structures(bench_structures):
    """~12 structures: benchmark prototypes plus tiny, skewed and supercell cases."""
    cases = [
        (f"bench{i}_{bench_structures[i].get_chemical_formula()}", bench_structures[i])
        for i in BENCH_INDICES
    ]
    return cases + _extra_structures()


def _chgnet(converter, atoms):
    """Directed edge keys, angle multiset and short undirected bonds of CHGNet's graph."""
    graph = converter(AseAtomsAdaptor.get_structure(atoms))
    ag = graph.atom_graph.numpy()
    image = graph.neighbor_image.detach().numpy()
    assert np.allclose(image, np.rint(image))
    image = np.rint(image).astype(int)
    keys = [(int(i), int(j), tuple(int(x) for x in s)) for (i, j), s in zip(ag, image)]
    bg = graph.bond_graph.numpy()
    angles = Counter((int(row[0]), keys[row[2]], keys[row[4]]) for row in bg)
    # bond lengths from CHGNet's own fractional coordinates and lattice
    lattice = graph.lattice.detach().numpy().astype(np.float64)
    frac = graph.atom_frac_coord.detach().numpy().astype(np.float64)
    length = np.linalg.norm((frac[ag[:, 1]] + image - frac[ag[:, 0]]) @ lattice, axis=1)
    directed2undirected = graph.directed2undirected.numpy()
    members: dict[int, set] = {}
    for e, u in enumerate(directed2undirected):
        if length[e] < BOND_CUTOFF:
            members.setdefault(int(u), set()).add(keys[e])
    bonds = Counter(frozenset(m) for m in members.values())
    return Counter(keys), angles, bonds


def _equijax(atoms):
    """The same three multisets from `atoms_to_graph`, plus bond-graph consistency checks."""
    graph = atoms_to_graph(atoms, CUTOFF, BOND_CUTOFF)
    a, b = graph.atoms, graph.bonds
    keys = [
        (int(i), int(j), tuple(int(x) for x in s))
        for i, j, s in zip(a.receivers, a.senders, a.edges["shift"])
    ]
    pair = np.asarray(a.edges["pair"])
    keys_of_pair: dict[int, set] = {}
    for e, p in enumerate(pair):
        keys_of_pair.setdefault(int(p), set()).add(keys[e])
    e_ij, e_ik, center = b.edges["edge_ij"], b.edges["edge_ik"], b.edges["center"]
    angles = Counter((int(c), keys[i], keys[k]) for c, i, k in zip(center, e_ij, e_ik))
    bonds = Counter(frozenset(keys_of_pair[int(p)]) for p in b.nodes["pair"])
    # internal consistency of the bond graph, checked against the atom-graph keys
    for node, (edge, p) in enumerate(zip(b.nodes["edge"], b.nodes["pair"])):
        assert pair[edge] == p, node
    np.testing.assert_array_equal(b.nodes["pair"][b.receivers], pair[e_ij])
    np.testing.assert_array_equal(b.nodes["pair"][b.senders], pair[e_ik])
    np.testing.assert_array_equal(a.receivers[e_ij], center)
    np.testing.assert_array_equal(a.receivers[e_ik], center)
    return Counter(keys), angles, bonds, graph


@pytest.fixture(scope="module")
def both(converter, structures):
    """name -> (chgnet multisets, equijax multisets) for every test structure."""
    return {name: (_chgnet(converter, atoms), _equijax(atoms)) for name, atoms in structures}


def _names():
    return [f"bench{i}" for i in BENCH_INDICES] + [name for name, _ in _extra_structures()]


@pytest.mark.parametrize("name", _names())
def test_atom_graph_edges_match_chgnet(both, name):
    """Directed atom-graph edges (centre, neighbour, image) equal CHGNet's as a multiset."""
    (ref_edges, _, _), (edges, _, _, _) = _lookup(both, name)
    assert sum(ref_edges.values()) > 0
    assert edges == ref_edges


@pytest.mark.parametrize("name", _names())
def test_angles_match_chgnet(both, name):
    """Angles (centre, edge key 1, edge key 2) equal CHGNet's bond_graph rows as a multiset."""
    (_, ref_angles, _), (_, angles, _, graph) = _lookup(both, name)
    assert sum(ref_angles.values()) > 0
    assert angles == ref_angles
    assert int(graph.bonds.n_edge[0]) == sum(ref_angles.values())


@pytest.mark.parametrize("name", _names())
def test_bonds_match_chgnet(both, name):
    """Short undirected bonds (pairs of directed edge keys < 3 Å) equal CHGNet's; same count."""
    (_, _, ref_bonds), (_, _, bonds, graph) = _lookup(both, name)
    assert bonds == ref_bonds
    assert int(graph.bonds.n_node[0]) == sum(ref_bonds.values())


def test_own_image_bond_counts_twice(both):
    """In the 1-atom cells every angle joins two bonds of the atom to its own images."""
    for name in ("bcc_Li_primitive", "one_atom_2.5A"):
        (_, ref_angles, ref_bonds), (_, angles, bonds, graph) = both[name]
        n_short = 2 * sum(ref_bonds.values())  # each self-image bond gives two short directed edges
        assert sum(angles.values()) == n_short * (n_short - 1) == sum(ref_angles.values())


def _lookup(both, name):
    matches = [key for key in both if key == name or key.startswith(name + "_")]
    assert len(matches) == 1, (name, list(both))
    return both[matches[0]]
