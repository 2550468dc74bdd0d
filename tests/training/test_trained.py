"""`transfer_params`: the leaf-by-leaf merge behind ``model.init_from``."""

from __future__ import annotations

import numpy as np
import pytest

from equijax.training.config import ConfigError, load_config, to_dict
from equijax.training.model_setup import check_init_from, transfer_params


def test_transfer_copies_shared_leaves_keeps_new_and_drops_old():
    fresh = {
        "params": {
            "trunk": {"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)},
            "new_head": {"w": np.ones(4, np.float32)},
        }
    }
    source = {
        "params": {
            "trunk": {"w": np.arange(6.0).reshape(2, 3), "b": np.full(3, 7.0)},
            "old_head": {"w": np.full(5, 9.0)},
        }
    }
    params, report = transfer_params(fresh, source)
    np.testing.assert_array_equal(params["params"]["trunk"]["w"], np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(params["params"]["trunk"]["b"], np.full(3, 7.0))
    np.testing.assert_array_equal(params["params"]["new_head"]["w"], np.ones(4))
    assert params["params"]["trunk"]["w"].dtype == np.float32  # the model's dtype, not the source's
    assert "old_head" not in params["params"]
    assert sorted(report["copied"]) == ["['params']['trunk']['b']", "['params']['trunk']['w']"]
    assert report["fresh"] == ["['params']['new_head']['w']"]
    assert report["dropped"] == ["['params']['old_head']['w']"]


def test_transfer_refuses_a_different_shape():
    fresh = {"params": {"trunk": {"w": np.zeros((2, 3))}}}
    with pytest.raises(ValueError, match=r"\['trunk'\]\['w'\] has shape \(3, 3\)"):
        transfer_params(fresh, {"params": {"trunk": {"w": np.zeros((3, 3))}}})


def test_init_from_with_pretrained_is_a_config_error():
    with pytest.raises(ConfigError, match="model.init_from"):
        load_config(None, ["model.pretrained=0.3.0", "model.init_from=runs/x"])


def test_transfer_refuses_no_shared_leaves_and_non_finite_ones():
    fresh = {"params": {"trunk": {"w": np.zeros(3)}}}
    with pytest.raises(ValueError, match="shares no parameter"):
        transfer_params(fresh, {"params": {"other": {"w": np.zeros(3)}}})
    with pytest.raises(ValueError, match=r"non-finite parameters: \["):
        transfer_params(fresh, {"params": {"trunk": {"w": np.array([0.0, np.nan, 1.0])}}})


def test_check_init_from_needs_a_run_with_the_same_model(tmp_path):
    import json

    config = load_config(None, [f"model.init_from={tmp_path}", "model.forces=direct"])
    with pytest.raises(FileNotFoundError, match="no config.json"):
        check_init_from(config.model)
    source = to_dict(load_config(None, []))
    (tmp_path / "config.json").write_text(json.dumps(source))
    check_init_from(config.model)  # only forces and init_from differ
    source["model"]["atom_graph_cutoff"] = 5.0
    source["model"]["n_conv"] = 3
    (tmp_path / "config.json").write_text(json.dumps(source))
    with pytest.raises(
        ValueError,
        match=r"differs in atom_graph_cutoff: 5.0 there, 6.0 here, "
        r"n_conv: 3 there, 4 here",
    ):
        check_init_from(config.model)


def test_init_from_a_run_with_direct_head_options(tmp_path):
    """A run trained with the direct heads' options (norm, three-body stress and forces, pair
    energy, trunk-gradient scale) can start a conservative fine-tune or a plain direct one:
    those options only shape heads that are dropped or started fresh."""
    import json

    source = to_dict(
        load_config(
            None,
            [
                "model.forces=direct",
                "model.direct_norm=20",
                "model.direct_angle_stress=true",
                "model.direct_trunk_grad=0.1",
                "model.direct_angle_forces=true",
                "model.direct_stress=virial_only",
                "model.direct_pair_energy=8",
            ],
        )
    )
    (tmp_path / "config.json").write_text(json.dumps(source))
    for forces in ("conservative", "direct"):
        check_init_from(
            load_config(None, [f"model.init_from={tmp_path}", f"model.forces={forces}"]).model
        )
