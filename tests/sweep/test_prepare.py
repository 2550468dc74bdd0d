"""Preparing sweep points: the config snapshot, finished-point detection, and the refusal to mix
results when a finished point's config has changed."""

from __future__ import annotations

import json

import pytest
import yaml

from equijax.sweep import SweepError, SweepSpec, expand
from equijax.sweep.runner import prepare
from equijax.training.config import load_config, to_dict


def _spec(tmp_path, epochs: int) -> SweepSpec:
    return SweepSpec(
        config="chgnet_emt_small",
        overrides=["model=chgnet_tiny", f"train.epochs={epochs}"],
        grid={"model.n_conv": [1, 2]},
        dir=str(tmp_path / "sweep"),
    )


def test_snapshot_is_the_resolved_config_and_finished_points_are_kept(tmp_path):
    spec = _spec(tmp_path, 2)
    git = {"commit": "abc", "dirty": False}
    points = expand(spec)
    for point in points:
        point_dir, finished = prepare(spec, point, git)
        assert not finished
        want = to_dict(
            load_config(
                "chgnet_emt_small",
                [*point.overrides, f"train.run_dir={point_dir}", "train.progress=false"],
            )
        )
        assert yaml.safe_load((point_dir / "config.yaml").read_text()) == want
        assert json.loads((point_dir / "point.json").read_text())["axes"] == point.axes
    done = tmp_path / "sweep" / points[0].name
    (done / "metrics.json").write_text("{}")
    # a snapshot that lacks a key (a field added to equijax later) is still the same config
    old = yaml.safe_load((done / "config.yaml").read_text())
    del old["model"]["forces"]
    (done / "config.yaml").write_text(yaml.safe_dump(old))
    assert prepare(spec, points[0], git) == (done, True)
    with pytest.raises(SweepError, match=r"finished with a different config.*train.epochs"):
        prepare(_spec(tmp_path, 3), expand(_spec(tmp_path, 3))[0], git)
    # an unfinished point whose config changed starts afresh with the new snapshot
    (tmp_path / "sweep" / points[1].name / "stale.txt").write_text("x")
    point_dir, finished = prepare(_spec(tmp_path, 3), expand(_spec(tmp_path, 3))[1], git)
    assert not finished and not (point_dir / "stale.txt").exists()
    assert yaml.safe_load((point_dir / "config.yaml").read_text())["train"]["epochs"] == 3


def test_a_new_axis_renames_finished_points_with_the_same_config(tmp_path):
    """Adding a zip axis renames every point. A finished point whose resolved config equals a new
    point's (the new axis at its default) is moved to the new name and counts as finished; a
    point whose config differs gets a fresh directory; unfinished old points are left alone."""
    from equijax.sweep.runner import orphaned_snapshots

    git = {"commit": "abc", "dirty": False}
    old = SweepSpec(
        config="chgnet_emt_small",
        overrides=["model=chgnet_tiny"],
        zip={"model.n_conv": [1, 2]},
        dir=str(tmp_path / "sweep"),
    )
    old_points = expand(old)
    for point in old_points:
        prepare(old, point, git)
    (tmp_path / "sweep" / old_points[0].name / "metrics.json").write_text('{"val_loss": 1}')

    new = SweepSpec(
        config="chgnet_emt_small",
        overrides=["model=chgnet_tiny"],
        zip={"model.n_conv": [1, 2], "model.forces": ["conservative", "direct"]},
        dir=str(tmp_path / "sweep"),
    )
    new_points = expand(new)
    assert {p.name for p in new_points}.isdisjoint(p.name for p in old_points)
    orphans = orphaned_snapshots(new.dir, [p.name for p in new_points])
    assert list(orphans) == [old_points[0].name]  # the unfinished n_conv=2 point is no orphan

    kept_dir, kept = prepare(new, new_points[0], git, orphans)
    assert kept and kept_dir.name == new_points[0].name and orphans == {}
    assert not (tmp_path / "sweep" / old_points[0].name).exists()
    assert json.loads((kept_dir / "metrics.json").read_text()) == {"val_loss": 1}
    info = json.loads((kept_dir / "point.json").read_text())
    assert info["renamed_from"] == old_points[0].name and info["axes"] == new_points[0].axes
    assert yaml.safe_load((kept_dir / "config.yaml").read_text())["train"]["run_dir"] == str(
        kept_dir
    )

    fresh_dir, finished = prepare(new, new_points[1], git, orphans)
    assert not finished and fresh_dir.name == new_points[1].name
    assert (tmp_path / "sweep" / old_points[1].name).exists()


def test_a_snapshot_without_the_new_axis_field_is_not_adopted(tmp_path):
    """An old run whose snapshot lacks the field a new axis sets (it predates the field) cannot
    say which value it ran with: it is not renamed to a new point, even to the default's."""
    from equijax.sweep.runner import orphaned_snapshots

    git = {"commit": "abc", "dirty": False}
    old = SweepSpec(
        config="chgnet_emt_small",
        overrides=["model=chgnet_tiny"],
        zip={"model.n_conv": [1, 2]},
        dir=str(tmp_path / "sweep"),
    )
    done, _ = prepare(old, expand(old)[0], git)
    (done / "metrics.json").write_text("{}")
    snapshot = yaml.safe_load((done / "config.yaml").read_text())
    del snapshot["model"]["forces"]
    (done / "config.yaml").write_text(yaml.safe_dump(snapshot))
    new = SweepSpec(
        config="chgnet_emt_small",
        overrides=["model=chgnet_tiny"],
        zip={"model.n_conv": [1, 2], "model.forces": ["conservative", "direct"]},
        dir=str(tmp_path / "sweep"),
    )
    points = expand(new)
    orphans = orphaned_snapshots(new.dir, [p.name for p in points])
    assert list(orphans) == [done.name]
    _, finished = prepare(new, points[0], git, orphans)
    assert not finished and done.exists() and list(orphans) == [done.name]
