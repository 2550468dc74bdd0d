"""The atom graph of `atoms_to_graph` against ase's neighbour list (`equijax.graphs.neighbors`)."""

from __future__ import annotations

from collections import Counter

import ase
import ase.build
import numpy as np
import pytest
from ase.neighborlist import neighbor_list

from equijax.graphs import atoms_to_graph, edge_vectors


def _random_cell(rng, lengths=(3.0, 7.0), skew=2.0):
    """A random, well-conditioned but skewed cell (rows are cell vectors)."""
    while True:
        cell = np.diag(rng.uniform(*lengths, size=3)) + rng.uniform(-skew, skew, size=(3, 3))
        if abs(np.linalg.det(cell)) > 0.2 * np.prod(np.linalg.norm(cell, axis=1)):
            return cell


def _random_structure(rng, n_atoms, cell, pbc):
    """Random atoms in ``cell``; fractional coordinates in [-1, 2) so some lie outside the cell."""
    symbols = rng.choice(["H", "C", "O", "Si", "Fe", "Cu"], size=n_atoms)
    scaled = rng.uniform(-1.0, 2.0, size=(n_atoms, 3))
    return ase.Atoms(symbols=list(symbols), positions=scaled @ cell, cell=cell, pbc=pbc)


def _cases():
    rng = np.random.default_rng(20240601)
    cases = []
    for k in range(4):  # random skewed periodic cells
        cell = _random_cell(rng)
        cases.append(
            (f"skewed{k}", _random_structure(rng, int(rng.integers(2, 7)), cell, True), 6.0)
        )
    # a strongly sheared cell (angles far from 90 degrees)
    sheared = np.array([[4.0, 0.0, 0.0], [3.6, 1.7, 0.0], [-2.9, 1.1, 2.4]])
    cases.append(("sheared", _random_structure(rng, 3, sheared, True), 5.0))
    # tiny cells: every atom sees many images of itself
    tiny = np.array([[2.1, 0.0, 0.0], [0.3, 1.9, 0.0], [-0.2, 0.4, 2.2]])
    cases.append(("tiny1", ase.Atoms("Cu", positions=[[0.3, -0.2, 0.7]], cell=tiny, pbc=True), 6.0))
    cases.append(("tiny2", _random_structure(rng, 2, tiny * 1.2, True), 4.5))
    tiny_sheared = np.array([[2.0, 0.0, 0.0], [1.9, 0.7, 0.0], [0.3, 0.2, 2.0]])
    cases.append(
        (
            "tiny_sheared",
            ase.Atoms("Li", positions=[[0.1, 0.1, 0.1]], cell=tiny_sheared, pbc=True),
            5.0,
        )
    )
    # mixed periodicity with a full, non-zero cell
    slab_cell = _random_cell(rng, lengths=(4.0, 6.0), skew=1.0)
    cases.append(("slab_TTF", _random_structure(rng, 5, slab_cell, [True, True, False]), 6.0))
    wire_cell = _random_cell(rng, lengths=(3.0, 5.0), skew=1.0)
    cases.append(("wire_TFF", _random_structure(rng, 4, wire_cell, [True, False, False]), 6.0))
    # mixed periodicity with zero vectors along the open axes
    wire0 = np.array([[2.6, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    positions = rng.uniform(0.0, 2.5, size=(4, 3))
    cases.append(
        (
            "wire_zero_cell",
            ase.Atoms("C4", positions=positions, cell=wire0, pbc=[True, False, False]),
            6.0,
        )
    )
    slab = ase.build.fcc111("Cu", (2, 2, 3), vacuum=5.0)  # ase slab, pbc=[T, T, F]
    slab.rattle(0.05, seed=1)
    cases.append(("fcc111_slab", slab, 5.0))
    # left-handed cell (negative determinant)
    left = _random_cell(rng)[[1, 0, 2]]
    assert np.linalg.det(left) < 0
    cases.append(("left_handed", _random_structure(rng, 3, left, True), 5.0))
    # general random cells (any orientation, strong shear) with random periodicity
    while sum(name.startswith("general") for name, _, _ in cases) < 5:
        cell = rng.normal(0.0, 3.0, size=(3, 3))
        lengths = np.linalg.norm(cell, axis=1)
        if lengths.min() < 1.5 or abs(np.linalg.det(cell)) < 0.05 * np.prod(lengths):
            continue
        pbc = rng.random(3) < 0.7
        pbc[int(rng.integers(3))] = True
        atoms, cutoff = _random_structure(rng, 3, cell, pbc), float(rng.uniform(3.0, 6.0))
        if np.unique(neighbor_list("i", atoms, cutoff)).size < len(atoms):
            continue  # an isolated atom: not a valid graph input
        k = sum(name.startswith("general") for name, _, _ in cases)
        pbc_name = "".join("T" if p else "F" for p in pbc)
        cases.append((f"general{k}_{pbc_name}", atoms, cutoff))
    # molecules: no cell, no periodicity
    cases.append(("ethanol", ase.build.molecule("CH3CH2OH"), 6.0))
    c60 = ase.build.molecule("C60")
    cases.append(("C60_cut3", c60, 3.0))  # not every pair is within the cutoff
    return cases


CASES = _cases()
IDS = [name for name, _, _ in CASES]


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def case(request):
    """(atoms, cutoff, graph, ase neighbour list) of one structure."""
    name, atoms, cutoff = request.param
    graph = atoms_to_graph(atoms, cutoff, min(3.0, cutoff))
    i, j, S, d, D = neighbor_list("ijSdD", atoms, cutoff)
    return atoms, cutoff, graph, (i, j, S, d, D)


def _keys(receivers, senders, shifts):
    return [
        (int(a), int(b), tuple(int(x) for x in s)) for a, b, s in zip(receivers, senders, shifts)
    ]


def test_edge_multiset_matches_ase(case):
    """The (receiver, sender, shift) multiset equals ase's (i, j, S) from neighbor_list."""
    _, _, graph, (i, j, S, _, _) = case
    a = graph.atoms
    ref = Counter(_keys(i, j, S))
    got = Counter(_keys(a.receivers, a.senders, a.edges["shift"]))
    assert len(ref) > 0
    assert got == ref
    assert int(a.n_edge[0]) == len(i)


def test_distances_and_vectors_match_ase(case):
    """|edge_vectors| equals ase's d and edge_vectors equals ase's D (1e-10) for each edge."""
    _, _, graph, (i, j, S, d, D) = case
    a = graph.atoms
    ref = {k: (dk, Dk) for k, dk, Dk in zip(_keys(i, j, S), d, D)}
    vec = edge_vectors(a)
    for key, v in zip(_keys(a.receivers, a.senders, a.edges["shift"]), vec):
        d_ref, D_ref = ref[key]
        assert abs(np.linalg.norm(v) - d_ref) < 1e-10, key
        np.testing.assert_allclose(v, D_ref, rtol=0, atol=1e-10, err_msg=str(key))


def test_every_edge_has_reverse_with_same_pair(case):
    """Each edge i->j (S) has a distinct reverse edge j->i (-S) carrying the same pair index."""
    _, _, graph, _ = case
    a = graph.atoms
    keys = _keys(a.receivers, a.senders, a.edges["shift"])
    index = {k: e for e, k in enumerate(keys)}
    assert len(index) == len(keys)  # no duplicate directed edge
    pair = np.asarray(a.edges["pair"])
    for e, (i, j, s) in enumerate(keys):
        r = index[(j, i, tuple(-x for x in s))]
        assert r != e
        assert pair[r] == pair[e]


def test_pair_indices_cover_range_twice(case):
    """Pair indices are exactly 0..n_pairs-1, each used by two directed edges; n_pairs = E / 2."""
    _, _, graph, _ = case
    a = graph.atoms
    pair = np.asarray(a.edges["pair"])
    n_pairs = int(a.globals["n_pairs"][0])
    assert 2 * n_pairs == pair.size
    assert pair.min() >= 0 and pair.max() < n_pairs
    np.testing.assert_array_equal(np.bincount(pair, minlength=n_pairs), np.full(n_pairs, 2))


def test_receivers_sorted(case):
    """Edges are sorted by receiver (centre atom)."""
    _, _, graph, _ = case
    assert np.all(np.diff(graph.atoms.receivers) >= 0)


def test_globals_match_atoms(case):
    """Nodes and globals reproduce the input: numbers, positions, cell, |det cell|, pbc, n_atoms."""
    atoms, _, graph, _ = case
    a = graph.atoms
    np.testing.assert_array_equal(a.nodes["numbers"], atoms.numbers)
    np.testing.assert_array_equal(a.nodes["positions"], atoms.positions)
    np.testing.assert_array_equal(a.globals["cell"][0], atoms.cell.array)
    np.testing.assert_array_equal(a.globals["pbc"][0], atoms.pbc)
    assert a.globals["n_atoms"][0] == len(atoms) == a.n_node[0]
    assert a.globals["volume"][0] == pytest.approx(abs(np.linalg.det(atoms.cell.array)), abs=1e-9)


def test_invariant_under_atom_permutation():
    """Permuting the atoms permutes the edge multiset accordingly (relabelled keys agree)."""
    rng = np.random.default_rng(7)
    atoms = _random_structure(rng, 6, _random_cell(rng), True)
    perm = rng.permutation(len(atoms))
    permuted = atoms[perm]
    g0, g1 = atoms_to_graph(atoms), atoms_to_graph(permuted)
    a0, a1 = g0.atoms, g1.atoms
    keys0 = Counter(_keys(a0.receivers, a0.senders, a0.edges["shift"]))
    # atom k of `permuted` is atom perm[k] of `atoms`
    keys1 = Counter(
        (int(perm[i]), int(perm[j]), s)
        for i, j, s in _keys(a1.receivers, a1.senders, a1.edges["shift"])
    )
    assert keys0 == keys1


def test_field_dtypes_and_shapes_as_documented(case):
    """Every field has the dtype and shape documented in equijax.graphs.crystal_graph."""
    atoms, _, graph, _ = case
    a, b = graph.atoms, graph.bonds
    n, e = len(atoms), a.senders.shape[0]
    n_bond, n_angle = b.nodes["edge"].shape[0], b.senders.shape[0]
    expected = [
        (a.nodes["numbers"], np.int32, (n,)),
        (a.nodes["positions"], np.float64, (n, 3)),
        (a.edges["shift"], np.int32, (e, 3)),
        (a.edges["pair"], np.int32, (e,)),
        (a.senders, np.int32, (e,)),
        (a.receivers, np.int32, (e,)),
        (a.globals["cell"], np.float64, (1, 3, 3)),
        (a.globals["volume"], np.float64, (1,)),
        (a.globals["n_atoms"], np.int32, (1,)),
        (a.globals["pbc"], np.bool_, (1, 3)),
        (a.globals["n_pairs"], np.int32, (1,)),
        (b.nodes["edge"], np.int32, (n_bond,)),
        (b.nodes["pair"], np.int32, (n_bond,)),
        (b.edges["center"], np.int32, (n_angle,)),
        (b.edges["edge_ij"], np.int32, (n_angle,)),
        (b.edges["edge_ik"], np.int32, (n_angle,)),
        (b.receivers, np.int32, (n_angle,)),
        (b.senders, np.int32, (n_angle,)),
    ]
    for k, (arr, dtype, shape) in enumerate(expected):
        assert isinstance(arr, np.ndarray), k
        assert arr.dtype == dtype and arr.shape == shape, (k, arr.dtype, arr.shape)
    assert b.globals is None
    np.testing.assert_array_equal(a.n_node, [n])
    np.testing.assert_array_equal(a.n_edge, [e])
    np.testing.assert_array_equal(b.n_node, [n_bond])
    np.testing.assert_array_equal(b.n_edge, [n_angle])


@pytest.mark.parametrize("n_atoms", [32767, 32775])
def test_many_atoms_shuffled_chain(n_atoms):
    """A shuffled open chain of > 2**15 atoms: neighbours are exactly the chain neighbours, sorted."""
    rng = np.random.default_rng(n_atoms)
    perm = rng.permutation(n_atoms)  # atom perm[k] sits at chain position k
    positions = np.zeros((n_atoms, 3))
    positions[perm, 0] = 1.5 * np.arange(n_atoms)
    atoms = ase.Atoms(numbers=np.ones(n_atoms, dtype=int), positions=positions, pbc=False)
    graph = atoms_to_graph(atoms, cutoff=2.0, bond_cutoff=1.6)
    a = graph.atoms
    left, right = perm[:-1], perm[1:]
    want = np.concatenate([np.stack([left, right], 1), np.stack([right, left], 1)])
    got = np.stack([a.receivers, a.senders], 1)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(np.unique(got, axis=0), np.unique(want, axis=0))
    assert got.shape == want.shape
    assert np.all(np.diff(a.receivers) >= 0)
    assert not np.any(a.edges["shift"])
    # every inner atom has two short bonds, so two ordered angles; the ends have none
    assert int(graph.bonds.n_edge[0]) == 2 * (n_atoms - 2)
