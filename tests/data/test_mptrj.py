"""MPtrj JSON: round-trip, pymatgen-compatible parsing, CHGNet's stress convention, malformed entries."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk

from equijax.data import (
    LabeledStructure,
    atoms_from_structure_dict,
    parse_mptrj,
    read_mptrj_json,
    structure_dict_from_atoms,
    write_mptrj_json,
)
from equijax.data.emt import generate_emt_dataset


def test_round_trip(mixed_structures, tmp_path):
    """write_mptrj_json -> read_mptrj_json gives the same ids, groups, cells and labels."""
    path = tmp_path / "mptrj.json"
    write_mptrj_json(mixed_structures, path)
    got, malformed = read_mptrj_json(path)
    assert malformed == {}
    # ids "{group}/{frame}" round-trip; any other id is read back as "{group}/{id}"
    want = {
        s.id if s.id.startswith(f"{s.group}/") else f"{s.group}/{s.id}": s for s in mixed_structures
    }
    assert "unlabelled/unlabelled" in want
    assert sorted(s.id for s in got) == sorted(want)
    for g in got:
        w = want[g.id]
        assert g.group == w.group
        np.testing.assert_array_equal(g.atoms.numbers, w.atoms.numbers)
        np.testing.assert_array_equal(g.atoms.pbc, w.atoms.pbc)
        np.testing.assert_array_equal(g.atoms.cell.array, w.atoms.cell.array)
        # positions go through fractional coordinates; labels through per-atom and kBar factors
        np.testing.assert_allclose(g.atoms.positions, w.atoms.positions, rtol=0, atol=1e-13)
        for name in ("energy", "forces", "stress", "magmoms"):
            gv, wv = getattr(g, name), getattr(w, name)
            assert (gv is None) == (wv is None), f"{g.id}: {name}"
            if wv is not None:
                np.testing.assert_allclose(
                    gv, wv, rtol=1e-15, atol=1e-15, err_msg=f"{g.id}: {name}"
                )


def test_structure_dict_matches_pymatgen():
    """Parsing Structure.as_dict() gives AseAtomsAdaptor.get_atoms' cell, positions, numbers, pbc."""
    from pymatgen.core import Lattice, Species, Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    rng = np.random.default_rng(1)
    lattice = Lattice.from_parameters(4.1, 5.3, 6.2, 81.0, 97.5, 112.0, pbc=(True, True, False))
    species = ["Li", Species("Fe", 2), "O", "O", "P"]
    structure = Structure(lattice, species, rng.uniform(-0.2, 1.2, (5, 3)))
    reference = AseAtomsAdaptor.get_atoms(structure)
    atoms = atoms_from_structure_dict(json.loads(json.dumps(structure.as_dict())))
    np.testing.assert_array_equal(atoms.cell.array, reference.cell.array)
    np.testing.assert_array_equal(atoms.positions, reference.positions)
    np.testing.assert_array_equal(atoms.numbers, reference.numbers)
    np.testing.assert_array_equal(atoms.pbc, reference.pbc)


def test_pymatgen_frame_labels_and_ids():
    """A frame built with pymatgen: energy = energy_per_atom * N, stress = kBar * -0.1, ids."""
    from pymatgen.core import Lattice, Structure

    structure = Structure(Lattice.cubic(3.0), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    frame = {
        "structure": structure.as_dict(),
        "energy_per_atom": -3.25,
        "force": [[0.1, 0.0, 0.0], [-0.1, 0.0, 0.0]],
        "stress": [[10.0, 1.0, 0.0], [1.0, -20.0, 0.0], [0.0, 0.0, 5.0]],
        "magmom": [0.0, 0.5],
    }
    (s,), malformed = parse_mptrj({"mp-22865": {"mp-22865-0-3": frame}})
    assert s.id == "mp-22865/mp-22865-0-3" and s.group == "mp-22865" and malformed == {}
    assert s.energy == -6.5
    np.testing.assert_array_equal(s.stress, [[-1.0, -0.1, 0.0], [-0.1, 2.0, 0.0], [0.0, 0.0, -0.5]])
    np.testing.assert_array_equal(s.magmoms, [0.0, 0.5])


def test_stress_convention_matches_chgnet(tmp_path):
    """chgnet StructureJsonData's targets equal ours and the EMT (ASE) labels the file was written from."""
    from chgnet.data.dataset import StructureJsonData
    from chgnet.graph import CrystalGraphConverter

    emt = {s.id: s for s in generate_emt_dataset(8, seed=5, progress=False) if s.stress is not None}
    assert len(emt) >= 4
    path = tmp_path / "emt.json"
    write_mptrj_json(list(emt.values()), path)
    ours = {s.id: s for s in read_mptrj_json(path).structures}
    data = StructureJsonData(str(path), CrystalGraphConverter(), targets="efs", shuffle=False)
    assert len(data) == len(emt)
    for i in range(len(data)):
        graph, targets = data[i]
        mp_id, frame_id = data.keys[i]
        structure_id = f"{mp_id}/{frame_id}"
        assert graph.graph_id == frame_id
        for s in (ours[structure_id], emt[structure_id]):
            assert np.abs(s.stress).max() > 0.1  # GPa: a real, non-trivial stress
            np.testing.assert_allclose(targets["e"].numpy(), s.energy / s.n_atoms, rtol=1e-6)
            np.testing.assert_allclose(targets["f"].numpy(), s.forces, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(targets["s"].numpy(), s.stress, rtol=1e-6, atol=1e-5)
    assert data.failed_idx == []  # chgnet silently substitutes failed items; none failed


def _good_frame(symbol="Cu"):
    atoms = bulk(symbol, "fcc", a=3.6)
    return {
        "structure": structure_dict_from_atoms(atoms),
        "energy_per_atom": -1.0,
        "force": [[0.0, 0.0, 0.0]],
        "stress": [[0.0] * 3] * 3,
        "magmom": None,
    }


def test_malformed_entries_are_reported_by_id(tmp_path):
    """Bad frames raise one ValueError listing every bad id, or are skipped and returned."""
    partial = _good_frame()
    partial["structure"]["sites"][0]["species"] = [
        {"element": "Cu", "occu": 0.5},
        {"element": "Ni", "occu": 0.5},
    ]
    unknown = _good_frame()
    unknown["structure"]["sites"][0]["species"][0]["element"] = "Xx"
    bad_force = _good_frame()
    bad_force["force"] = [[0.0, 0.0]]
    nan_energy = _good_frame()
    nan_energy["energy_per_atom"] = float("nan")
    no_structure = _good_frame()
    del no_structure["structure"]
    data = {
        "mp-1": {"ok": _good_frame(), "partial": partial, "unknown": unknown},
        "mp-2": {
            "bad_force": bad_force,
            "nan": nan_energy,
            "none": no_structure,
            "ok": _good_frame("Ni"),
        },
    }
    bad = {
        "mp-1/partial": "occupancy",
        "mp-1/unknown": "unknown element 'Xx'",
        "mp-2/bad_force": "forces has shape (1, 2)",
        "mp-2/nan": "energy is nan",
        "mp-2/none": "missing 'structure'",
    }
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="5 malformed") as err:
        read_mptrj_json(path)
    for structure_id in bad:
        assert structure_id in str(err.value)
    structures, malformed = read_mptrj_json(path, skip_malformed=True)
    assert [s.id for s in structures] == ["mp-1/ok", "mp-2/ok"]
    assert sorted(malformed) == sorted(bad)
    for structure_id, reason in bad.items():
        assert reason in malformed[structure_id], malformed[structure_id]


def test_write_rejects_colliding_frames():
    """Two structures that map to the same (mp_id, frame_id) are refused, naming the id."""
    a = LabeledStructure(id="g/0", atoms=bulk("Cu"), group="g")
    b = LabeledStructure(id="0", atoms=bulk("Cu"), group="g")
    with pytest.raises(ValueError, match="'0'"):
        write_mptrj_json([a, b], "/dev/null")
