"""`equijax bench train-quality` hands chgnet's Trainer exactly equijax's data: the split a run's
own config gives (`equijax.training.evaluate.run_split`, the path `equijax evaluate` takes), with
the labels as chgnet's StructureData turns them into targets, and the same architecture. No
training here."""

import dataclasses
import json

import numpy as np
import pytest

from equijax.bench import train_quality, train_quality_reference
from equijax.training.config import to_dict
from equijax.training.evaluate import run_split

pytestmark = pytest.mark.usefixtures("fast_compiles")


@pytest.fixture(scope="module")
def emt(tmp_path_factory):
    """A 24-structure EMT config, its bench splits, and a run directory holding its config."""
    run_dir = tmp_path_factory.mktemp("run")
    config = train_quality.experiment_config("emt_small", 0, str(run_dir), n_structures=24)
    (run_dir / "config.json").write_text(json.dumps(to_dict(config)))
    return config, train_quality.splits(config), run_dir


def test_chgnet_gets_equijax_split_and_labels(emt):
    config, parts, run_dir = emt
    ids = [[s.id for s in part] for part in parts]
    # the split a run with this config trains, validates and tests on
    assert ids == [[s.id for s in run_split(run_dir, k)] for k in ("train", "val", "test")]
    groups = [{s.group for s in part} for part in parts]
    assert all(groups) and not (
        groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2]
    )

    everything = [s for part in parts for s in part]
    dataset = train_quality_reference.structure_data(everything, magmoms=False)
    indices = train_quality_reference.split_indices(*parts)
    assert [[dataset.structure_ids[i] for i in indices[k]] for k in ("train", "val", "test")] == ids
    for i, s in enumerate(everything):  # chgnet's own conversion of what it was handed
        graph, targets = dataset[i]
        assert graph.mp_id == s.id
        np.testing.assert_array_equal(graph.atomic_number.numpy(), s.atoms.numbers)
        np.testing.assert_allclose(targets["e"].item(), s.energy / len(s.atoms), rtol=1e-6)
        np.testing.assert_allclose(targets["f"].numpy(), s.forces, atol=1e-5)
        if s.stress is None:  # masked by chgnet's loss (allow_missing_labels)
            assert np.isnan(targets["s"].numpy()).all()
        else:  # back in equijax's GPa, tensile positive, after chgnet's VASP conversion
            np.testing.assert_allclose(targets["s"].numpy(), s.stress, rtol=1e-5, atol=1e-5)
    assert any(s.stress is None for s in everything) and any(
        s.stress is not None for s in everything
    )

    # the train loader sees each train structure at most once per epoch, whole batches only
    batch = 4
    loaders = train_quality_reference.loaders(dataset, indices, batch, seed=0)
    seen = [g.mp_id for graphs, _ in loaders["train"] for g in graphs]
    assert len(seen) == len(parts[0]) // batch * batch and len(set(seen)) == len(seen)
    assert set(seen) <= set(ids[0])
    assert [g.mp_id for graphs, _ in loaders["val"] for g in graphs] == ids[1]


def test_magmoms_are_handed_as_magnitudes(emt):
    _, parts, _ = emt
    s = parts[0][0]
    magmoms = np.linspace(-1.0, 1.0, len(s.atoms))
    labelled = dataclasses.replace(s, magmoms=magmoms)
    _, targets = train_quality_reference.structure_data([labelled])[0]
    np.testing.assert_allclose(targets["m"].numpy(), np.abs(magmoms), atol=1e-7)


def test_same_architecture_and_param_count(emt):
    """chgnet's fresh weights, converted, give equijax's model the same energies and forces."""
    config, parts, _ = emt
    check = train_quality.architecture_check(config, parts[1][:2])
    assert check["max_abs_energy_per_atom_diff"] < 1e-5
    assert check["max_abs_force_diff"] < 1e-4
    assert check["equijax_params"] == check["chgnet_params"]["total"] == 74742
