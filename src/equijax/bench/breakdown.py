"""Where a training step's time goes: the forward pass, the forces/stress derivative, and the
gradient with respect to the params plus the optimizer update, by timing nested jitted functions
on the same batch (each stage includes the ones before it, so differences attribute the time).
"""

from __future__ import annotations

import time

import jax
import numpy as np

from equijax.potential import predict_padded


def median_ms(fn, *args, repeats: int = 5) -> float:
    """Median wall time (ms) of ``fn(*args)`` over ``repeats`` calls after one warm-up (compile)
    call, each waited for with `jax.block_until_ready`."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def stage_breakdown(module, params, graph, step_ms: float, repeats: int = 5) -> dict:
    """Stage times (ms) of one training step of ``module`` on ``graph`` (one device's padded
    `CrystalGraph`), given the full step's median ``step_ms``. On one device, ``graph`` is the
    step's whole batch; on several, it is one device's share, and the differences also contain
    the step's communication:

    ``forward_ms`` (energies, magmoms and, for direct heads, forces and stress);
    ``forces_stress_ms`` (what `predict_padded` adds: the first derivative for conservative
    forces, about nothing for direct ones); ``param_gradient_and_update_ms`` (the rest of the
    step: loss, its gradient with respect to the params through everything above, which is a
    second derivative for conservative forces, Adam and the EMA); and each as a ``share`` of the
    step. Differences of medians can come out slightly negative for stages that cost nothing.
    """
    forward = jax.jit(lambda p, g: module.apply(p, g))
    predict = jax.jit(lambda p, g: predict_padded(module, p, g))
    forward_ms = median_ms(forward, params, graph, repeats=repeats)
    predict_ms = median_ms(predict, params, graph, repeats=repeats)
    stages = {
        "forward_ms": forward_ms,
        "forces_stress_ms": predict_ms - forward_ms,
        "param_gradient_and_update_ms": step_ms - predict_ms,
    }
    return {**stages, "step_ms": step_ms, "share": {k[:-3]: v / step_ms for k, v in stages.items()}}
