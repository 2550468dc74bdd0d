"""`equijax bench chgnet-train` end to end: both frameworks train on the same teacher labels."""

import json
import os

import numpy as np
import pytest

from equijax.bench.common import share_gpu_with_torch
from equijax.cli import main

pytestmark = pytest.mark.usefixtures("fast_compiles")


def test_chgnet_train_runs_both_sides(tmp_path):
    """Both sides take timed steps; equijax's loss on its own teacher labels stays near zero."""
    out = tmp_path / "train.json"
    assert (
        main(
            [
                "bench",
                "chgnet-train",
                "--limit",
                "2",
                "--batch-size",
                "2",
                "--steps",
                "1",
                "--forces",
                "conservative,direct,direct-angle,direct-physical",
                "--memory",
                "--conservative-every",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["complete"] is True
    assert result["chgnet"]["available"], "the reference extra must be installed for the tests"
    assert result["equijax"]["structures_per_s"] > 0 and result["chgnet"]["structures_per_s"] > 0
    # labels are the pretrained model's own predictions, and Adam at lr 1e-4 moves little in
    # 4 steps: a large loss would mean the labels or the loss are wired wrong
    assert result["equijax"]["final_loss"] < 1e-3
    # direct heads start at zero on the pretrained trunk: the loss is the force/stress error of a
    # zero prediction, finite and far above the conservative model's
    direct = result["equijax_direct"]
    assert (
        direct["structures_per_s"] > 0
        and 10 * result["equijax"]["final_loss"] < direct["final_loss"] < 1e3
    )
    # the three-body stress MLP starts at zero too: the same zero prediction, nearly the same loss
    angle = result["equijax_direct-angle"]
    assert angle["structures_per_s"] > 0
    np.testing.assert_allclose(angle["final_loss"], direct["final_loss"], rtol=0.2)
    # so do the physical heads' MLPs (three-body forces, pair energy), but their first update
    # moves the energy (pair energy) and the stress (virial of the force weights, ~270 GPa per
    # unit weight) further: finite, of the direct heads' order, far above the conservative loss
    physical = result["equijax_direct-physical"]
    assert 10 * result["equijax"]["final_loss"] < physical["final_loss"] < 3 * direct["final_loss"]
    # memory: XLA's plan of each step against the step's measured resident growth (the plan is
    # compiled separately, so the two are independent); the reference's growth is measured too
    # (with conservative steps every 2 the plan holds both kinds of step, and a measured cycle too)
    for key in (
        "equijax",
        "equijax_direct",
        "equijax_direct-angle",
        "equijax_direct_every2",
        "equijax_direct-physical_every2",
    ):
        plan, measured = result[key]["xla_memory_MB"], result[key]["step_rss_growth_MB"]
        assert 0.5 < measured / plan["total"] < 1.5, (key, plan, measured)
    assert result["chgnet"]["step_rss_growth_MB"] > 0
    # --conservative-every applies to each direct kind asked for; its steps take the energy's
    # second derivative, so their plan exceeds the plain direct step's
    assert {
        "equijax_direct_every2",
        "equijax_direct-angle_every2",
        "equijax_direct-physical_every2",
    } <= set(result)
    every = result["equijax_direct-physical_every2"]
    assert every["xla_memory_MB"]["temp"] > physical["xla_memory_MB"]["temp"]
    assert 10 * result["equijax"]["final_loss"] < every["final_loss"] < 3 * direct["final_loss"]
    # direct heads take no second derivative: less memory than the conservative step
    assert (
        result["equijax_direct"]["xla_memory_MB"]["temp"]
        < result["equijax"]["xla_memory_MB"]["temp"]
    )


def test_a_stopped_run_keeps_what_it_measured(tmp_path, monkeypatch):
    """Each finished run is written at once, so a run stopped by a time limit keeps it."""
    from equijax.bench import chgnet_train

    monkeypatch.setattr(chgnet_train, "_teacher_labels", lambda structures, batch_size: structures)
    timed = []

    def time_one_then_stop(labeled, batch_size, steps, run, breakdown, memory):
        if timed:
            raise KeyboardInterrupt  # what a time limit does to the second run
        timed.append(run)
        return {
            "ms_per_step": 10.0,
            "structures_per_s": 200.0,
            "compile_s": 1.0,
            "peak_memory_MB": None,
        }

    monkeypatch.setattr(chgnet_train, "_equijax_rate", time_one_then_stop)
    out = tmp_path / "partial.json"
    with pytest.raises(KeyboardInterrupt):
        chgnet_train.run(
            out=str(out),
            batch_size=2,
            steps=1,
            limit=2,
            reference=False,
            forces=("conservative", "direct"),
        )
    result = json.loads(out.read_text())
    assert result["complete"] is False
    assert result["equijax"]["structures_per_s"] == 200.0 and "equijax_direct" not in result


def test_on_a_gpu_the_reference_is_timed_first_and_kept(tmp_path, monkeypatch):
    """On a GPU the reference runs first and is saved at once: a stop in equijax's first run
    still leaves the denominator of every ratio."""
    from equijax.bench import chgnet_train, chgnet_train_reference

    monkeypatch.setattr(chgnet_train, "_teacher_labels", lambda structures, batch_size: structures)
    monkeypatch.setattr(chgnet_train.jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(
        chgnet_train_reference,
        "chgnet_train_rate",
        lambda *args: {
            "available": True,
            "device": "cpu",
            "ms_per_step": 100.0,
            "structures_per_s": 20.0,
        },
    )

    def stop(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(chgnet_train, "_equijax_rate", stop)
    out = tmp_path / "partial.json"
    with pytest.raises(KeyboardInterrupt):
        chgnet_train.run(out=str(out), batch_size=2, steps=1, limit=2, reference=True)
    result = json.loads(out.read_text())
    assert result["complete"] is False and result["chgnet"]["structures_per_s"] == 20.0


def test_share_gpu_with_torch_keeps_a_users_setting(monkeypatch):
    """JAX's GPU preallocation is turned off for the reference unless the user chose otherwise."""
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    share_gpu_with_torch()
    assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "true")
    share_gpu_with_torch()
    assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "true"


def test_remat_and_unfused_runs_train_the_same(tmp_path):
    """``--remat`` adds each run with rematerialised blocks, ``--unfused-gates`` each with the
    gated MLPs' core and gate first layers apart: the same losses as the default run (the
    reference), and remat in a smaller XLA plan."""
    out = tmp_path / "remat.json"
    assert (
        main(
            [
                "bench",
                "chgnet-train",
                "--limit",
                "2",
                "--batch-size",
                "2",
                "--steps",
                "2",
                "--forces",
                "direct",
                "--remat",
                "--unfused-gates",
                "--memory",
                "--no-reference",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    plain, remat = result["equijax_direct"], result["equijax_direct_remat"]
    for key in ("equijax_direct_remat", "equijax_direct_unfused", "equijax_direct_remat_unfused"):
        np.testing.assert_allclose(result[key]["final_loss"], plain["final_loss"], rtol=1e-4)
    assert remat["xla_memory_MB"]["temp"] < plain["xla_memory_MB"]["temp"]


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--precision", "default,fp8", "--precision takes a subset of default,float32,tf32,bf16"),
        (
            "--forces",
            "direct,automatic",
            "--forces takes a subset of conservative,direct,direct-angle,direct-physical",
        ),
        ("--conservative-every", "-1", "--conservative-every must be >= 0"),
    ],
)
def test_bad_choices_exit_with_the_valid_ones(flag, value, message, tmp_path):
    """Unknown precisions or force heads stop the command before any structure is loaded."""
    with pytest.raises(SystemExit, match=message):
        main(["bench", "chgnet-train", flag, value, "--out", str(tmp_path / "never.json")])
    assert not (tmp_path / "never.json").exists()
