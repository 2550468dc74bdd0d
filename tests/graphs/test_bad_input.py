"""Bad structures raise a `ValueError` naming the structure and the problem (`equijax.graphs.validation`)."""

from __future__ import annotations

import logging

import ase
import ase.build
import numpy as np
import pytest
from ase.neighborlist import neighbor_list

from equijax.graphs import IsolatedAtomError, atoms_to_graph, build_graphs

CUTOFF = 6.0


def _isolated_pair():
    """Two atoms 10 Å apart in a big box without periodicity: both isolated at a 6 Å cutoff."""
    return ase.Atoms(
        "Cu2",
        positions=[[1, 1, 1], [11, 1, 1]],
        cell=[30, 30, 30],
        pbc=False,
        info={"id": "lonely-pair"},
    )


def _good(ident):
    atoms = ase.build.bulk("NaCl", "rocksalt", a=5.64)
    atoms.info["id"] = ident
    return atoms


def _with(atoms, ident):
    atoms.info["id"] = ident
    return atoms


def _bad_cases():
    cases = []
    same = ase.Atoms("Cu2", positions=[[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], pbc=False)
    cases.append(("same_position", _with(same, "twins"), r"same position"))
    image = ase.Atoms(
        "Cu2", positions=[[0.0, 0.0, 0.0], [3.0, 0.0, 0.0]], cell=[3.0, 3.0, 3.0], pbc=True
    )
    cases.append(("same_as_image", _with(image, "on-image"), r"same position"))
    skew_cell = np.array([[2.9, 0.0, 0.0], [-0.4, 2.8, 0.0], [0.3, 0.2, 3.1]])
    p0 = np.array([0.2, 0.1, 0.3])
    # atom 1 sits exactly on the image of atom 0 shifted by a - b
    skew_image = ase.Atoms(
        "Fe2", positions=[p0, p0 + skew_cell[0] - skew_cell[1]], cell=skew_cell, pbc=True
    )
    cases.append(("same_as_skewed_image", _with(skew_image, "on-skew-image"), r"same position"))
    cases.append(("empty", _with(ase.Atoms(), "nothing"), r"no atoms"))
    z0 = ase.Atoms(numbers=[0, 1], positions=[[0, 0, 0], [0.9, 0, 0]])
    cases.append(("Z=0", _with(z0, "ghost"), r"atomic number.*\[0\]"))
    z95 = ase.Atoms(numbers=[95, 8], positions=[[0, 0, 0], [1.9, 0, 0]])
    cases.append(("Z=95", _with(z95, "americium"), r"atomic number.*\[95\]"))
    nan = ase.Atoms("H2", positions=[[0, 0, 0], [np.nan, 0, 0]])
    cases.append(("nan_position", _with(nan, "nan-pos"), r"NaN or inf"))
    inf = ase.Atoms("H2", positions=[[0, 0, 0], [0.7, np.inf, 0]], cell=[5, 5, 5], pbc=True)
    cases.append(("inf_position", _with(inf, "inf-pos"), r"NaN or inf"))
    nan_cell = ase.Atoms(
        "H2",
        positions=[[0, 0, 0], [0.7, 0, 0]],
        cell=[[5, 0, 0], [0, np.nan, 0], [0, 0, 5]],
        pbc=True,
    )
    cases.append(("nan_cell", _with(nan_cell, "nan-cell"), r"NaN or inf"))
    twin_vectors = ase.Atoms(
        "H2", positions=[[0, 0, 0], [0.7, 0, 0]], cell=[[4, 0, 0], [4, 0, 0], [0, 0, 4]], pbc=True
    )
    cases.append(("identical_cell_vectors", _with(twin_vectors, "flat-cell"), r"singular"))
    zero_vector = ase.Atoms(
        "H2", positions=[[0, 0, 0], [0.7, 0, 0]], cell=[[4, 0, 0], [0, 0, 0], [0, 0, 4]], pbc=True
    )
    cases.append(("zero_cell_vector", _with(zero_vector, "zero-vector"), r"zero"))
    slab = ase.Atoms(
        "H2",
        positions=[[0, 0, 0], [0.7, 0, 0]],
        cell=[[4, 0, 0], [8, 0, 0], [0, 0, 0]],
        pbc=[True, True, False],
    )
    cases.append(("dependent_slab_vectors", _with(slab, "bad-slab"), r"linearly dependent"))
    isolated = _isolated_pair()
    cases.append(("isolated", isolated, r"isolated"))
    return cases


BAD = _bad_cases()


@pytest.mark.parametrize("name,atoms,problem", BAD, ids=[c[0] for c in BAD])
def test_bad_structure_raises_value_error_naming_it(name, atoms, problem):
    """atoms_to_graph raises ValueError whose message has the structure id, formula and the problem."""
    with pytest.raises(ValueError, match=problem) as info:
        atoms_to_graph(atoms, CUTOFF)
    message = str(info.value)
    assert atoms.info["id"] in message
    formula = atoms.get_chemical_formula() if len(atoms) else "empty"
    assert formula in message


def test_label_without_id_uses_formula():
    """Without an id in atoms.info, the message still names the structure by its formula."""
    atoms = ase.Atoms("CuAu", positions=[[0, 0, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match=r"AuCu.*same position"):
        atoms_to_graph(atoms, CUTOFF)


def test_isolated_atom_error_lists_isolated_atoms():
    """IsolatedAtomError is a ValueError and its .isolated equals the atoms ase finds no neighbour for."""
    atoms = ase.Atoms(
        "Cu4",
        positions=[[0, 0, 0], [2.5, 0, 0], [20, 0, 0], [0, 20, 0]],
        pbc=False,
        info={"id": "two-lonely"},
    )
    i = neighbor_list("i", atoms, CUTOFF)
    want = np.setdiff1d(np.arange(len(atoms)), i)
    with pytest.raises(IsolatedAtomError) as info:
        atoms_to_graph(atoms, CUTOFF)
    assert isinstance(info.value, ValueError)
    np.testing.assert_array_equal(np.sort(info.value.isolated), want)
    assert "two-lonely" in str(info.value)


def test_isolated_in_a_periodic_cell():
    """An atom isolated inside a large periodic cell raises IsolatedAtomError too."""
    atoms = ase.Atoms(
        "Cu3",
        positions=[[0, 0, 0], [2.5, 0, 0], [10, 10, 10]],
        cell=[20, 20, 20],
        pbc=True,
        info={"id": "periodic-lonely"},
    )
    with pytest.raises(IsolatedAtomError, match="periodic-lonely") as info:
        atoms_to_graph(atoms, CUTOFF)
    np.testing.assert_array_equal(info.value.isolated, [2])


@pytest.mark.parametrize("cutoffs", [(3.0, 4.0), (6.0, 0.0), (6.0, -1.0)])
def test_bad_cutoffs_raise(cutoffs):
    """bond_cutoff > cutoff (or <= 0) raises ValueError naming both cutoffs."""
    cutoff, bond_cutoff = cutoffs
    with pytest.raises(ValueError, match=r"bond_cutoff.*cutoff"):
        atoms_to_graph(_good("ok"), cutoff, bond_cutoff)


def test_non_atoms_input_raises_type_error():
    """A non-ase input raises TypeError rather than failing later."""
    with pytest.raises(TypeError, match="ase.Atoms"):
        atoms_to_graph([[0.0, 0.0, 0.0]], CUTOFF)


def test_build_graphs_drops_only_isolated(caplog):
    """build_graphs(drop_isolated=True) drops just the isolated structure, reports it and warns."""
    structures = [_good("a"), _isolated_pair(), _good("c"), _good("d")]
    with caplog.at_level(logging.WARNING, logger="equijax.graphs"):
        dataset = build_graphs(structures, drop_isolated=True, progress=False)
    assert dataset.indices == [0, 2, 3]
    assert len(dataset.graphs) == 3
    assert [index for index, _ in dataset.dropped] == [1]
    reason = dataset.dropped[0][1]
    assert "lonely-pair" in reason and "#1" in reason and "isolated" in reason
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "1" in warnings[0].getMessage() and "isolated" in warnings[0].getMessage()
    # the kept graphs are those of the kept structures
    for graph, index in zip(dataset.graphs, dataset.indices):
        assert len(structures[index]) == int(graph.atoms.n_node[0])


def test_build_graphs_raises_without_drop_isolated():
    """build_graphs(drop_isolated=False) raises IsolatedAtomError naming the structure and its index."""
    structures = [_good("a"), _isolated_pair(), _good("c")]
    with pytest.raises(IsolatedAtomError, match=r"#1.*lonely-pair"):
        build_graphs(structures, drop_isolated=False, progress=False)


def test_build_graphs_never_drops_other_errors():
    """drop_isolated=True still raises for a non-isolation problem (coincident atoms)."""
    bad = ase.Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 0]], info={"id": "twins"})
    with pytest.raises(ValueError, match=r"#1.*twins.*same position"):
        build_graphs([_good("a"), bad], drop_isolated=True, progress=False)
