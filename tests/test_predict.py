"""`equijax predict` end to end, checked against the PyTorch chgnet."""

import json

import ase.build
import ase.io
import numpy as np
import pytest
from pymatgen.io.ase import AseAtomsAdaptor

from equijax.cli import main
from equijax.predict import read_structures

# jax_disable_most_optimizations (XLA backend -O0): about half the compile time; results agree
# to rounding (the tolerances here are far above it)
pytestmark = pytest.mark.usefixtures("fast_compiles")


def test_predict_json_matches_torch_chgnet(tmp_path, torch_chgnet):
    """JSON output of `equijax predict` on a two-frame file agrees with the reference model."""
    frames = [ase.build.bulk("Cu", "fcc", 3.6, cubic=True), ase.build.bulk("NaCl", "rocksalt", 5.6)]
    frames[0].rattle(0.05, seed=1)
    path = tmp_path / "in.extxyz"
    ase.io.write(path, frames)
    out = tmp_path / "out.json"
    assert main(["predict", str(path), "--format", "json", "--out", str(out)]) == 0
    records = json.loads(out.read_text())
    ref = torch_chgnet.predict_structure(
        [AseAtomsAdaptor.get_structure(a) for a in frames], task="efsm"
    )
    assert [r["frame"] for r in records] == [0, 1]
    for record, r, atoms in zip(records, ref, frames):
        assert record["n_atoms"] == len(atoms)
        assert abs(record["energy_per_atom_eV"] - r["e"]) <= 2e-5
        assert abs(record["energy_eV"] - r["e"] * len(atoms)) <= 2e-5 * len(atoms)
        np.testing.assert_allclose(record["forces_eV_per_A"], r["f"], atol=2e-4)
        np.testing.assert_allclose(record["stress_GPa"], r["s"], atol=2e-3)
        np.testing.assert_allclose(record["magmoms_muB"], r["m"], atol=2e-4)


def test_predict_table_lists_every_frame(tmp_path, capsys):
    """The table output has one row per frame, named file:frame."""
    path = tmp_path / "two.extxyz"
    ase.io.write(path, [ase.build.bulk("Si", "diamond", 5.43), ase.build.bulk("Al", "fcc", 4.05)])
    assert main(["predict", str(path)]) == 0
    text = capsys.readouterr().out
    assert f"{path}:0" in text and f"{path}:1" in text


def test_unreadable_and_missing_files_raise(tmp_path):
    """A missing file and an unparsable file each raise ValueError naming the file."""
    with pytest.raises(ValueError, match="no such file"):
        read_structures([str(tmp_path / "missing.xyz")])
    bad = tmp_path / "bad.xyz"
    bad.write_text("not a structure\n")
    with pytest.raises(ValueError, match="bad.xyz"):
        read_structures([str(bad)])
