"""Per-target losses with masks, reduced so that devices can sum their parts.

Each target contributes ``weight * sum(masked elementwise loss) / count``; under data
parallelism every device computes its sums and the counts are summed over all devices first, so
the loss (and its gradient) is the mean over the real structures of the global batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from equijax.training.batches import Targets
from equijax.training.config import LossConfig

TARGETS = ("energy", "forces", "stress", "magmoms")


def elementwise(kind: str, delta: float, error: jax.Array) -> jax.Array:
    """Huber (``delta``, as torch's HuberLoss) or squared error of ``error``, elementwise."""
    if kind == "mse":
        return error**2
    abs_error = jnp.abs(error)
    return jnp.where(abs_error < delta, 0.5 * error**2, delta * (abs_error - 0.5 * delta))


def loss_sums(config: LossConfig, predictions: dict, targets: Targets) -> tuple[dict, dict, dict]:
    """Masked loss sums, element counts and absolute-error sums per target.

    ``predictions``: ``energy_per_atom`` (G,), ``forces`` (N, 3), ``stress`` (G, 3, 3),
    ``magmoms`` (N,). Returns three dicts keyed by `TARGETS`.
    """
    pairs = {
        "energy": (predictions["energy_per_atom"] - targets.energy_per_atom, targets.energy_mask),
        "forces": (predictions["forces"] - targets.forces, targets.forces_mask[:, None]),
        "stress": (predictions["stress"] - targets.stress, targets.stress_mask[:, None, None]),
        "magmoms": (predictions["magmoms"] - targets.magmoms, targets.magmoms_mask),
    }
    sums, counts, abs_sums = {}, {}, {}
    for name, (error, mask) in pairs.items():
        mask = jnp.broadcast_to(mask, error.shape)
        error = jnp.where(mask > 0, error, 0.0)  # padding may hold anything; never let it in
        sums[name] = jnp.sum(elementwise(config.kind, config.delta, error) * mask)
        abs_sums[name] = jnp.sum(jnp.abs(error) * mask)
        counts[name] = jnp.sum(mask)
    return sums, counts, abs_sums


def loss_weights(config: LossConfig, stage_two=False) -> dict:
    """Per-target weights (keyed by `TARGETS`): the first stage's, or where ``stage_two`` (a
    bool, or a traced boolean scalar inside a step) those of ``config.stage_two``, which keeps
    the first stage's weight for a target it leaves at None."""
    weights = {}
    for t in TARGETS:
        first, second = getattr(config, t), getattr(config.stage_two, t)
        weights[t] = first if second is None else jnp.where(stage_two, second, first)
    return weights


def gradient_term_weights(config: LossConfig, weights: dict) -> dict:
    """Weights of the energy's gradient terms in a direct model's conservative step, keyed by
    `TARGETS`: ``config.gradient_forces`` / ``gradient_stress``, or where None the heads'
    ``weights`` (the current stage's); 0 for energy and magmoms, which the heads' terms count."""
    own = {"forces": config.gradient_forces, "stress": config.gradient_stress}
    return {
        "energy": 0.0,
        "magmoms": 0.0,
        **{t: weights[t] if w is None else w for t, w in own.items()},
    }


def total_loss(
    config: LossConfig, sums: dict, counts: dict, weights: dict | None = None
) -> jax.Array:
    """``sum_t weight_t * sums_t / counts_t`` (targets without labels contribute 0); ``weights``
    default to the first stage's (`loss_weights`)."""
    weights = loss_weights(config) if weights is None else weights
    return sum(weights[t] * sums[t] / jnp.maximum(counts[t], 1.0) for t in TARGETS)
