"""Rematerialisation that does not rely on optimization barriers (which XLA:CPU drops).

`jax.checkpoint` (`flax.linen.remat`) marks the recomputation with optimization barriers. XLA:CPU
expands those barriers early in its pipeline, and its later CSE passes merge the recomputation back
into the forward pass: on CPU a checkpointed block then keeps all its intermediates, as if it were
not checkpointed (`experiments/chgnet_train_bench/README.md`, "Memory").

`remat_call` recomputes a module in the backward pass from inputs that are made to *depend on the
output cotangent*: ``x + 0 · c``, with ``c`` one finite number read from the cotangent. The
compiler cannot fold ``0 · c`` (it does not know ``c`` is finite) and must keep ``x + (±0)``, so the
recomputation can neither run before the cotangent exists nor be merged with the forward pass.
The values are unchanged (``x + 0 = x``). The params are gated too: otherwise a params-only
subexpression (a LayerNorm scale broadcast to every angle) is shared with the forward pass and
kept alive until the backward pass.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def after_cotangent(tree, cotangent):
    """``tree`` with every floating leaf plus ``0 · c``, ``c`` one element of ``cotangent`` made
    finite (the first non-empty float or complex leaf; real part): the same values, but computed
    only once ``cotangent`` is (a data dependency). Unchanged if ``cotangent`` has no such leaf."""
    leaves = [
        c
        for c in jax.tree_util.tree_leaves(cotangent)
        if jnp.issubdtype(jnp.result_type(c), jnp.inexact) and jnp.size(c) > 0
    ]
    if not leaves:
        return tree
    zero = 0.0 * jnp.nan_to_num(jnp.real(jnp.ravel(leaves[0])[0]))

    def gate(x):
        if jnp.issubdtype(jnp.result_type(x), jnp.floating):
            return x + zero.astype(x.dtype)
        return x

    return jax.tree_util.tree_map(gate, tree)


def _varying_axes(x) -> frozenset:
    """The shard_map mesh axes along which ``x`` varies (empty outside shard_map)."""
    aval = jax.typeof(x)
    axis_type = getattr(aval, "manual_axis_type", None)  # jax 0.10
    if axis_type is not None:
        return frozenset(axis_type.varying)
    return frozenset(getattr(aval, "vma", ()))  # jax versions that name it vma


def _sum_over_replicas(cotangent, primal):
    """Under shard_map, the cotangent of a device-invariant ``primal`` (replicated params) that
    came out device-varying is summed over those axes, as JAX's own transpose does."""
    if jnp.result_type(cotangent) == jax.dtypes.float0:
        return cotangent
    extra = tuple(sorted(_varying_axes(cotangent) - _varying_axes(primal)))
    return jax.lax.psum(cotangent, extra) if extra else cotangent


def remat_call(module: nn.Module, *args):
    """``module(*args)`` keeping only its params and inputs for the backward pass, which
    recomputes the module once the output's cotangent exists (`after_cotangent`).

    The module may hold params only: any other collection (``batch_stats``, caches) raises
    `ValueError`, since the recomputation could not see it. It must be deterministic (no RNG
    streams): the recomputation has to reproduce the forward pass exactly.

    Call it inside a parent's compact method with a freshly constructed submodule
    (``remat_call(AtomConv(..., name="atom_conv_0"), x, ...)``): the params live under the
    submodule's name, exactly as with ``module(*args)``. Differentiable to any order in reverse
    mode (the backward pass is ordinary JAX code); integer inputs get no gradient. Inside
    `jax.shard_map`, gradients of replicated params are summed over devices, as with plain
    autodiff.
    """
    unbound = module.clone(parent=None)

    def call(mdl, *inputs):
        return mdl(*inputs)

    def forward(mdl, *inputs):
        others = sorted(set(mdl.variables) - {"params"})
        if others:
            raise ValueError(
                f"remat_call: {type(mdl).__name__} holds variables other than params "
                f"({others}); the recomputation would not see them"
            )
        return mdl(*inputs), (mdl.variables.get("params", {}), inputs)

    def backward(residuals, cotangent):
        params, inputs = residuals
        # params too: else a params-only subexpression (a broadcast LayerNorm scale) is shared
        # with the forward pass and kept alive in between. Gated, they vary over shard_map's
        # devices; `_sum_over_replicas` compares with the original, device-invariant params.
        gated_params, gated_inputs = after_cotangent((params, inputs), cotangent)
        _, vjp = jax.vjp(
            lambda p, *x: unbound.apply({"params": p}, *x), gated_params, *gated_inputs
        )
        tangents = jax.tree_util.tree_map(_sum_over_replicas, vjp(cotangent), (params, *inputs))
        params_t, *inputs_t = tangents
        return ({"params": params_t}, *inputs_t)

    return nn.custom_vjp(call, forward_fn=forward, backward_fn=backward)(module, *args)
