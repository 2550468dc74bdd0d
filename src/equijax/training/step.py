"""Train state, optimizer, and the jit-compiled data-parallel train and eval steps.

One code path for 1 CPU, N simulated CPU devices, GPUs and many hosts: `jax.shard_map` over a
one-axis mesh ``("data",)``; each device gets its own padded batch (leading device axis), gradients
and loss sums are `psum`-reduced, and the loss is the mean over the global batch's real labels.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from equijax.potential import is_direct, predict_padded
from equijax.training.config import LossConfig, OptimConfig
from equijax.training.loss import (
    TARGETS,
    gradient_term_weights,
    loss_sums,
    loss_weights,
    total_loss,
)

AXIS = "data"


class TrainState(NamedTuple):
    """Everything a step changes: step count, params, optimizer state, EMA of params, RNG key."""

    step: jax.Array
    params: Any
    opt_state: Any
    ema_params: Any
    rng: jax.Array


def learning_rate_schedule(config: OptimConfig, total_steps: int):
    """The learning rate at each optimizer step (an optax schedule): linear warm-up from 0 over
    ``warmup_steps``, then a cosine decay to ``learning_rate * final_lr_fraction``."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=config.learning_rate,
        warmup_steps=max(config.warmup_steps, 1),
        decay_steps=max(total_steps, config.warmup_steps + 1),
        end_value=config.learning_rate * config.final_lr_fraction,
    )


def make_optimizer(config: OptimConfig, total_steps: int, frozen: tuple[str, ...] = ("atomref",)):
    """Gradient clipping, then Adam/AdamW on a warm-up + cosine schedule
    (`learning_rate_schedule`); top-level param collections named in ``frozen`` (the fitted
    composition reference) are not updated."""
    schedule = learning_rate_schedule(config, total_steps)
    if config.optimizer == "adamw":
        base = optax.adamw(schedule, weight_decay=config.weight_decay)
    else:
        base = optax.adam(schedule)
    inner = optax.chain(optax.clip_by_global_norm(config.clip_norm), base)

    def labels(params):
        return {"params": {k: ("frozen" if k in frozen else "trained") for k in params["params"]}}

    return optax.multi_transform({"trained": inner, "frozen": optax.set_to_zero()}, labels)


def init_state(params, optimizer, seed: int) -> TrainState:
    """A fresh `TrainState` (EMA starts at the params)."""
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=optimizer.init(params),
        ema_params=params,
        rng=jax.random.key_data(jax.random.key(seed)),
    )


def make_mesh(n_devices: int = 0) -> Mesh:
    """A one-axis mesh over the first ``n_devices`` devices (0: all, across processes)."""
    devices = jax.devices()
    if n_devices:
        if n_devices > len(devices):
            raise ValueError(f"asked for {n_devices} devices, only {len(devices)} available")
        devices = devices[:n_devices]
    return Mesh(np.array(devices), (AXIS,))


def _local(tree):
    return jax.tree_util.tree_map(lambda x: x[0], tree)


def _predict_and_sum(
    module, loss_config, params, graph, targets, gradient_forces=False, weights=None
):
    """The batch's loss and, for the metrics, label counts and absolute-error sums. With
    ``gradient_forces`` (a direct model) the loss also fits the energy's gradients, -dE/dr and
    (1/V) dE/dε, to the force and stress labels, weighted by ``loss_config.gradient_forces`` /
    ``gradient_stress`` or, where those are None, as the heads' terms; the metrics stay those of
    the direct heads. ``weights``: per-target loss weights (default: the first stage's)."""
    weights = loss_weights(loss_config) if weights is None else weights
    predictions = predict_padded(
        module, params, graph, compute_stress=True, gradient_forces=gradient_forces
    )
    gradient_terms = None
    if gradient_forces:
        gradient_terms = {"forces": predictions["forces"], "stress": predictions["stress"]}
        predictions = {
            **predictions,
            "forces": predictions["direct_forces"],
            "stress": predictions["direct_stress"],
        }
    sums, counts, abs_sums = loss_sums(loss_config, predictions, targets)
    counts = jax.lax.psum(counts, AXIS)  # label counts do not depend on the params
    loss = total_loss(loss_config, sums, counts, weights)
    if gradient_terms is not None:  # forces and stress only: energy and magmoms are counted once
        extra, _, _ = loss_sums(loss_config, {**predictions, **gradient_terms}, targets)
        loss = loss + total_loss(
            loss_config, extra, counts, gradient_term_weights(loss_config, weights)
        )
    return loss, (counts, abs_sums)


def _metrics(loss, counts, abs_sums) -> dict:
    abs_sums = jax.lax.psum(abs_sums, AXIS)
    out = {"loss": loss}
    for t in TARGETS:
        out[f"mae_{t}"] = abs_sums[t] / jnp.maximum(counts[t], 1.0)
        out[f"count_{t}"] = counts[t]
    return out


def ema_update(ema_params, params, step, decay: float):
    """The EMA of the params after optimizer step ``step`` (0-based): ``d * ema + (1 - d) *
    params`` with ``d = min(decay, (1 + step) / (10 + step))``.

    The decay warms up (TensorFlow's ``ExponentialMovingAverage(num_updates=...)`` convention): the
    random initial params leave the average within a few steps, and a short run averages fewer
    steps (0.973 at step 320, so about the last 37). A fixed 0.99 averaged the last ~100 steps
    and still weighed the initial params 4% after 320 steps, which cost the 320-step EMT run
    1.2-1.4x in validation forces and stress (docs/experiments.md). ``decay`` 0 keeps the latest
    params."""
    step = jnp.asarray(step, jnp.float32)
    d = jnp.minimum(decay, (1.0 + step) / (10.0 + step))
    return optax.incremental_update(params, ema_params, 1.0 - d)


def make_train_step(
    module,
    optimizer,
    loss_config: LossConfig,
    mesh: Mesh,
    ema_decay: float,
    conservative_every: int = 0,
    stage_two_from: int | None = None,
):
    """``step(state, graph, targets) -> (state, metrics)``, jit-compiled, data-parallel over
    ``mesh``. ``graph``/``targets`` carry a leading device axis of size ``mesh.size``.

    ``conservative_every`` k > 0 (a model with direct heads only): every k-th step (steps
    0, k, 2k, ... of the state's count) the loss also fits the energy's gradients to the force and
    stress labels (`_predict_and_sum`), so the energy learns from the force labels as a
    conservative model's does; the other steps take no derivative of the energy. One compiled step
    holds both kinds under `jax.lax.cond`, which runs one of them.

    ``stage_two_from``: from this step of the state's count on, the loss takes the weights of
    ``loss_config.stage_two`` (`equijax.training.config.stage_two_start_step`), and its
    ``conservative_every`` k2, where set (not None), replaces ``conservative_every``: steps
    ``stage_two_from``, ``stage_two_from + k2``, ... are conservative ones; None: never. The
    switch is traced, so both stages share one compiled step. ``loss_config.gradient_forces`` /
    ``gradient_stress`` weigh the conservative steps' gradient terms (`gradient_term_weights`)."""
    every_two = loss_config.stage_two.conservative_every
    every_two = conservative_every if stage_two_from is None or every_two is None else every_two
    for name, k in (
        ("conservative_every", conservative_every),
        ("loss.stage_two.conservative_every", every_two),
    ):
        if k < 0:
            raise ValueError(f"{name} must be >= 0, got {k}")
        if k and not is_direct(module):
            raise ValueError(f"{name} needs a model with direct heads (forces='direct')")
    weighted = [
        n for n in ("gradient_forces", "gradient_stress") if getattr(loss_config, n) is not None
    ]
    for name in weighted:
        w = getattr(loss_config, name)
        if not (np.isfinite(w) and w >= 0):
            raise ValueError(f"loss_config.{name} must be a finite number >= 0 or None, got {w}")
    if stage_two_from is not None and stage_two_from < 0:
        raise ValueError(f"stage_two_from must be >= 0 or None, got {stage_two_from}")
    has_conservative_steps = bool(
        (conservative_every and stage_two_from != 0) or (stage_two_from is not None and every_two)
    )
    if weighted and not has_conservative_steps:
        raise ValueError(
            f"loss_config.{weighted[0]} is set but no step is a conservative one "
            f"(conservative_every {conservative_every}, stage two from step {stage_two_from} with "
            f"conservative_every {every_two}): the weight would never be used"
        )

    def per_device(state: TrainState, graph, targets):
        graph, targets = _local(graph), _local(targets)
        in_stage_two = False if stage_two_from is None else state.step >= stage_two_from
        weights = loss_weights(loss_config, in_stage_two)

        def gradients(params, graph, targets, gradient_forces):
            return jax.value_and_grad(
                lambda p: _predict_and_sum(
                    module, loss_config, p, graph, targets, gradient_forces, weights
                ),
                has_aux=True,
            )(params)

        # params are replicated (device-invariant), so under shard_map jax.grad already sums
        # their cotangents over devices: grads is the gradient of the global loss, no psum
        if conservative_every or every_two:
            every, phase = conservative_every, state.step
            if stage_two_from is not None:  # stage two counts its period from its first step
                every = jnp.where(in_stage_two, every_two, conservative_every)
                phase = jnp.where(in_stage_two, state.step - stage_two_from, state.step)
            (loss, (counts, abs_sums)), grads = jax.lax.cond(
                (every > 0) & (phase % jnp.maximum(every, 1) == 0),
                lambda p: gradients(p, graph, targets, True),
                lambda p: gradients(p, graph, targets, False),
                state.params,
            )
        else:
            (loss, (counts, abs_sums)), grads = gradients(state.params, graph, targets, False)
        loss = jax.lax.psum(loss, AXIS)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = ema_update(state.ema_params, params, state.step, ema_decay)
        new_state = TrainState(state.step + 1, params, opt_state, ema, state.rng)
        return new_state, _metrics(loss, counts, abs_sums)

    sharded = jax.shard_map(
        per_device, mesh=mesh, in_specs=(P(), P(AXIS), P(AXIS)), out_specs=(P(), P())
    )
    return jax.jit(sharded, donate_argnums=0)


def make_eval_step(module, loss_config: LossConfig, mesh: Mesh):
    """``eval(params, graph, targets) -> metrics`` (loss and MAE sums/counts), no update."""

    def per_device(params, graph, targets):
        graph, targets = _local(graph), _local(targets)
        loss, (counts, abs_sums) = _predict_and_sum(module, loss_config, params, graph, targets)
        return _metrics(jax.lax.psum(loss, AXIS), counts, abs_sums)

    sharded = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(AXIS), P(AXIS)), out_specs=P())
    return jax.jit(sharded)


def shard_batch(mesh: Mesh, tree):
    """Place a host batch with a leading device axis onto the mesh (works across processes:
    each process supplies the shards of its own devices from the same global batch)."""
    sharding = NamedSharding(mesh, P(AXIS))

    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree_util.tree_map(put, tree)


def replicate(mesh: Mesh, tree):
    """Place a pytree replicated on every device of the mesh."""
    sharding = NamedSharding(mesh, P())
    return jax.tree_util.tree_map(
        lambda x: jax.make_array_from_callback(np.shape(x), sharding, lambda _: np.asarray(x)), tree
    )
