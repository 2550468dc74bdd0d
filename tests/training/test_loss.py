"""Per-target losses against torch's HuberLoss/MSELoss and a hand-written numpy computation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from equijax.training.batches import Targets
from equijax.training.config import LossConfig, StageTwoConfig
from equijax.training.loss import TARGETS, elementwise, loss_sums, loss_weights, total_loss

# jax_disable_most_optimizations (XLA backend -O0): about half the compile time; results agree
# to rounding (the tolerances here are far above it)
pytestmark = pytest.mark.usefixtures("fast_compiles")


@pytest.mark.parametrize("delta", [0.01, 0.1, 1.0, 2.5])
def test_huber_matches_torch(delta):
    """`elementwise("huber", δ, e)` equals ``torch.nn.HuberLoss(delta=δ, reduction="none")``."""
    rng = np.random.default_rng(int(delta * 1000))
    error = np.concatenate(
        [
            rng.normal(scale=3 * delta, size=500),
            [0.0, delta, -delta, delta * (1 + 1e-6), 40 * delta],
        ]
    )
    error = error.astype(np.float32)
    got = np.asarray(elementwise("huber", delta, jnp.asarray(error)))
    prediction = torch.from_numpy(error)
    want = torch.nn.HuberLoss(delta=delta, reduction="none")(
        prediction, torch.zeros_like(prediction)
    )
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-6, atol=1e-7 * delta**2)


def test_mse_matches_torch():
    """`elementwise("mse", ...)` equals ``torch.nn.MSELoss(reduction="none")``."""
    error = np.random.default_rng(0).normal(scale=2.0, size=300).astype(np.float32)
    got = np.asarray(elementwise("mse", 0.1, jnp.asarray(error)))
    prediction = torch.from_numpy(error)
    want = torch.nn.MSELoss(reduction="none")(prediction, torch.zeros_like(prediction))
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-6)


def _random_case(rng, n_graph=5, n_node=23, garbage=True):
    """Random predictions/targets/masks; masked-out prediction and target entries hold NaN/inf."""
    shapes = {
        "energy": (n_graph,),
        "forces": (n_node, 3),
        "stress": (n_graph, 3, 3),
        "magmoms": (n_node,),
    }
    mask_shapes = {"energy": n_graph, "forces": n_node, "stress": n_graph, "magmoms": n_node}
    pred, target, mask = {}, {}, {}
    for t in TARGETS:
        pred[t] = rng.normal(scale=0.5, size=shapes[t]).astype(np.float32)
        target[t] = rng.normal(scale=0.5, size=shapes[t]).astype(np.float32)
        mask[t] = (rng.random(mask_shapes[t]) < 0.6).astype(np.float32)
        if garbage:
            bad = (
                np.broadcast_to(
                    mask[t].reshape(mask[t].shape + (1,) * (len(shapes[t]) - 1)), shapes[t]
                )
                == 0
            )
            junk = rng.choice(np.array([np.nan, np.inf, -np.inf, 1e38], np.float32), size=shapes[t])
            pred[t] = np.where(bad, junk, pred[t]).astype(np.float32)
            target[t] = np.where(bad, junk[::-1] if junk.ndim == 1 else junk, target[t]).astype(
                np.float32
            )
    predictions = {
        "energy_per_atom": jnp.asarray(pred["energy"]),
        "forces": jnp.asarray(pred["forces"]),
        "stress": jnp.asarray(pred["stress"]),
        "magmoms": jnp.asarray(pred["magmoms"]),
    }
    targets = Targets(
        *map(
            jnp.asarray,
            (
                target["energy"],
                target["forces"],
                target["stress"],
                target["magmoms"],
                mask["energy"],
                mask["forces"],
                mask["stress"],
                mask["magmoms"],
            ),
        )
    )
    return predictions, targets, pred, target, mask


def _numpy_reference(config: LossConfig, pred, target, mask):
    """Per-target sums, counts and |error| sums, and the weighted total, by explicit loops."""
    weights = {
        "energy": config.energy,
        "forces": config.forces,
        "stress": config.stress,
        "magmoms": config.magmoms,
    }
    sums, counts, abs_sums, total = {}, {}, {}, 0.0
    for t in TARGETS:
        s = c = a = 0.0
        for row in range(mask[t].shape[0]):
            if mask[t][row] == 0:
                continue
            for e in np.atleast_1d(pred[t][row].astype(np.float64) - target[t][row]).ravel():
                ae = abs(e)
                if config.kind == "mse":
                    s += e * e
                else:
                    s += (
                        0.5 * e * e
                        if ae < config.delta
                        else config.delta * (ae - 0.5 * config.delta)
                    )
                a += ae
                c += 1
        sums[t], counts[t], abs_sums[t] = s, c, a
        total += weights[t] * (s / c if c else 0.0)
    return sums, counts, abs_sums, total


@pytest.mark.parametrize("kind", ["huber", "mse"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_masked_sums_and_total_match_numpy(kind, seed):
    """`loss_sums` + `total_loss` equal numpy; masked NaN/inf garbage stays out (also of grads)."""
    rng = np.random.default_rng(seed)
    config = LossConfig(
        kind=kind,
        delta=float(rng.uniform(0.05, 0.5)),
        energy=1.0,
        forces=float(rng.uniform(0.5, 2)),
        stress=float(rng.uniform(0.05, 0.5)),
        magmoms=float(rng.uniform(0.05, 0.5)),
    )
    predictions, targets, pred, target, mask = _random_case(rng)
    sums, counts, abs_sums = loss_sums(config, predictions, targets)
    total = total_loss(config, sums, counts)
    ref_sums, ref_counts, ref_abs, ref_total = _numpy_reference(config, pred, target, mask)
    for t in TARGETS:
        assert float(counts[t]) == ref_counts[t], t
        np.testing.assert_allclose(float(sums[t]), ref_sums[t], rtol=2e-6, err_msg=t)
        np.testing.assert_allclose(float(abs_sums[t]), ref_abs[t], rtol=2e-6, err_msg=t)
    np.testing.assert_allclose(float(total), ref_total, rtol=2e-6)

    grads = jax.grad(lambda p: total_loss(config, *loss_sums(config, p, targets)[:2]))(predictions)
    for name, g in grads.items():
        g = np.asarray(g)
        assert np.isfinite(g).all(), f"non-finite gradient for {name}"
    # masked entries get exactly zero gradient
    assert (np.asarray(grads["energy_per_atom"])[mask["energy"] == 0] == 0).all()
    assert (np.asarray(grads["forces"])[mask["forces"] == 0] == 0).all()


def test_stage_two_weights_replace_only_the_ones_they_set():
    """`loss_weights` under jit with a traced stage flag: stage one gives the config's weights;
    stage two gives ``stage_two``'s where set and keeps the others; `total_loss` with them equals
    the numpy total of a config whose plain weights are those."""
    rng = np.random.default_rng(3)
    config = LossConfig(
        kind="huber",
        delta=0.2,
        energy=1.0,
        forces=2.0,
        stress=0.1,
        magmoms=0.3,
        stage_two=StageTwoConfig(start=0.5, energy=10.0, magmoms=0.0),
    )
    predictions, targets, pred, target, mask = _random_case(rng)
    sums, counts, _ = loss_sums(config, predictions, targets)
    weighted = jax.jit(
        lambda flag: (
            loss_weights(config, flag),
            total_loss(config, sums, counts, loss_weights(config, flag)),
        )
    )
    for flag, plain in ((False, (1.0, 2.0, 0.1, 0.3)), (True, (10.0, 2.0, 0.1, 0.0))):
        weights, total = weighted(jnp.asarray(flag))
        assert tuple(float(weights[t]) for t in TARGETS) == pytest.approx(plain)
        as_plain = LossConfig(kind="huber", delta=0.2, **dict(zip(TARGETS, plain)))
        np.testing.assert_allclose(
            float(total), _numpy_reference(as_plain, pred, target, mask)[3], rtol=2e-6
        )


def test_missing_labels_contribute_zero_without_nan():
    """A target with an all-zero mask adds 0 to the loss (no 0/0 NaN), also in the gradient."""
    rng = np.random.default_rng(7)
    config = LossConfig(kind="huber", delta=0.1, stress=0.3, magmoms=0.2)
    predictions, targets, pred, target, mask = _random_case(rng, garbage=False)
    for t, field in (("stress", "stress_mask"), ("magmoms", "magmoms_mask")):
        mask[t] = np.zeros_like(mask[t])
        targets = targets._replace(**{field: mask[t]})
    predictions["stress"] = jnp.full_like(predictions["stress"], jnp.nan)
    predictions["magmoms"] = jnp.full_like(predictions["magmoms"], jnp.inf)
    sums, counts, _ = loss_sums(config, predictions, targets)
    total = float(total_loss(config, sums, counts))
    assert float(counts["stress"]) == 0 and float(counts["magmoms"]) == 0
    assert float(sums["stress"]) == 0 and float(sums["magmoms"]) == 0
    assert np.isfinite(total)
    garbage = {
        "stress": np.asarray(predictions["stress"]),
        "magmoms": np.asarray(predictions["magmoms"]),
    }
    _, _, _, ref_total = _numpy_reference(config, pred | garbage, target, mask)
    np.testing.assert_allclose(total, ref_total, rtol=2e-6)
    # with no labels at all the loss is exactly 0
    empty = targets._replace(
        energy_mask=np.zeros_like(mask["energy"]), forces_mask=np.zeros_like(mask["forces"])
    )
    sums, counts, _ = loss_sums(config, predictions, empty)
    assert float(total_loss(config, sums, counts)) == 0.0
    grads = jax.grad(lambda p: total_loss(config, *loss_sums(config, p, empty)[:2]))(predictions)
    assert all(np.all(np.asarray(g) == 0) for g in grads.values())
