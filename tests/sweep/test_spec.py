"""Sweep specifications: grid x zip expansion, Hydra's axis syntax, and errors naming the key."""

from __future__ import annotations

import itertools

import pytest

from equijax.sweep import SweepError, SweepSpec, expand, load_spec, parse_axis


def test_grid_times_zip_expands_to_every_combination():
    """Points are the Cartesian product of grid axes with the zipped tuples, each exactly once,
    with the fixed overrides first."""
    spec = SweepSpec(
        config=None,
        overrides=["train=smoke"],
        grid={"model.n_conv": [1, 2, 3], "model.tp": ["cg", "gaunt_grid"]},
        zip={"optim.learning_rate": [0.001, 0.01], "data.seed": [0, 1]},
    )
    points = expand(spec)
    want = {
        (a, b, c, d)
        for (a, b), (c, d) in itertools.product(
            itertools.product(["1", "2", "3"], ["cg", "gaunt_grid"]),
            [("0.001", "0"), ("0.01", "1")],
        )
    }
    got = {
        (
            p.axes["model.n_conv"],
            p.axes["model.tp"],
            p.axes["optim.learning_rate"],
            p.axes["data.seed"],
        )
        for p in points
    }
    assert len(points) == 12 and got == want
    for p in points:
        assert p.overrides[0] == "train=smoke"
        assert p.overrides[1:] == [f"{k}={v}" for k, v in p.axes.items()]
    assert len({p.name for p in points}) == 12


def test_yaml_values_become_override_text():
    spec = SweepSpec(grid={"model.mlp_hidden_dims": [[8], [16, 16]], "train.progress": [True]})
    assert [p.axes["model.mlp_hidden_dims"] for p in expand(spec)] == ["[8]", "[16,16]"]
    assert expand(spec)[0].axes["train.progress"] == "true"


@pytest.mark.parametrize(
    "text, key, values",
    [
        ("model.n_conv=1,2,3", "model.n_conv", ["1", "2", "3"]),
        ("train.seed=range(0,3)", "train.seed", ["0", "1", "2"]),
        ("model=chgnet_tiny,equivariant_small", "model", ["chgnet_tiny", "equivariant_small"]),
        ("optim.learning_rate=0.01", "optim.learning_rate", ["0.01"]),
    ],
)
def test_axis_syntax(text, key, values):
    assert parse_axis(text) == (key, values)


@pytest.mark.parametrize(
    "spec, key",
    [
        (SweepSpec(zip={"a": [1, 2], "b": [1]}), "'zip'"),
        (SweepSpec(grid={"a": []}), "'grid.a'"),
        (SweepSpec(grid={"a": [1]}, zip={"a": [1]}), "'zip.a'"),
        (SweepSpec(launcher="pbs"), "'launcher'"),
        (SweepSpec(jobs=0), "'jobs'"),
        (SweepSpec(grid={"a": [1, 1]}), "share the name"),
    ],
)
def test_bad_specs_name_the_key(spec, key):
    with pytest.raises(SweepError, match=key):
        expand(spec)


def test_yaml_sweep_block_and_command_line_axes(tmp_path):
    """A ``sweep:`` block gives default axes; a command-line axis of the same key replaces it; an
    unknown key in the block is an error naming it."""
    path = tmp_path / "exp.yaml"
    path.write_text(
        "defaults:\n  - model: chgnet_tiny\n  - _self_\n"
        "sweep:\n  jobs: 3\n  grid:\n    model.n_conv: [1, 2]\n    data.seed: [0, 1]\n"
    )
    spec = load_spec(str(path), grid=["data.seed=5,6,7"])
    assert spec.jobs == 3 and spec.grid == {"model.n_conv": [1, 2], "data.seed": ["5", "6", "7"]}
    assert len(expand(spec)) == 6
    path.write_text("sweep:\n  grids:\n    a: [1]\n")
    with pytest.raises(SweepError, match="'grids'"):
        load_spec(str(path))
