"""`remat_call`: the same values and gradients as a plain call (first and second order, inside
shard_map too), and really less memory than a plain call where `jax.checkpoint` may not give it."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from equijax.bench.memory import xla_memory
from equijax.nn.remat import after_cotangent, remat_call


class Block(nn.Module):
    """Six gated layers on (rows, 32) features plus a gathered integer-indexed input."""

    @nn.compact
    def __call__(self, x, table, index):
        x = x + table[index]
        for _ in range(6):
            x = jax.nn.silu(nn.Dense(32)(x)) * jax.nn.sigmoid(nn.Dense(32)(x)) + x
        return x


class Chain(nn.Module):
    remat: bool

    @nn.compact
    def __call__(self, x, table, index):
        for i in range(4):
            block = Block(name=f"block_{i}")
            x = remat_call(block, x, table, index) if self.remat else block(x, table, index)
        return x


def _setup(rows: int):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((rows, 32)), jnp.float32)
    table = jnp.asarray(rng.standard_normal((7, 32)), jnp.float32)
    index = jnp.asarray(rng.integers(0, 7, rows), jnp.int32)
    params = Chain(False).init(jax.random.key(0), x, table, index)
    return params, x, table, index


def _loss(remat):
    def loss(params, x, table, index):
        return jnp.sum(jnp.tanh(Chain(remat).apply(params, x, table, index)) ** 2)
    return loss


def test_values_and_gradients_equal_a_plain_call_to_second_order():
    params, x, table, index = _setup(50)
    for argnums in (0, 1, 2):  # params, a per-row input, a gathered input
        plain = jax.jit(jax.grad(_loss(False), argnums))(params, x, table, index)
        remat = jax.jit(jax.grad(_loss(True), argnums))(params, x, table, index)
        for a, b in zip(jax.tree_util.tree_leaves(remat), jax.tree_util.tree_leaves(plain)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    # forces-style: the gradient of a loss on the input gradient (reverse over reverse)
    def outer(remat):
        def f(p):
            g = jax.grad(_loss(remat), 1)(p, x, table, index)
            return jnp.sum(g ** 2)
        return jax.grad(f)

    # these reach 1e6; in float64 the two agree to 1e-15 of that, so compare to each leaf's scale
    for a, b in zip(jax.tree_util.tree_leaves(jax.jit(outer(True))(params)),
                    jax.tree_util.tree_leaves(jax.jit(outer(False))(params))):
        scale = float(np.abs(b).max())
        np.testing.assert_allclose(np.asarray(a) / scale, np.asarray(b) / scale, atol=1e-5)


def test_replicated_param_gradients_inside_shard_map_are_summed_as_plain_autodiff():
    """Under shard_map the params are device-invariant and the data varies: the custom backward
    pass must return the params' gradient summed over devices, as JAX's own transpose does."""
    params, x, table, index = _setup(48)
    mesh = jax.make_mesh((1,), ("data",))
    shard = lambda a: jax.device_put(a, NamedSharding(mesh, P("data")))  # noqa: E731
    rep = lambda a: jax.device_put(a, NamedSharding(mesh, P()))  # noqa: E731

    def grads(remat):
        def per_device(p, xs, t, idx):
            return jax.grad(_loss(remat))(p, xs, t, idx)
        return jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P("data"), P(), P("data")),
                                     out_specs=P()))

    args = (jax.tree_util.tree_map(rep, params), shard(x), rep(table), shard(index))
    for a, b in zip(jax.tree_util.tree_leaves(grads(True)(*args)),
                    jax.tree_util.tree_leaves(grads(False)(*args))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_remat_call_keeps_less_memory_than_a_plain_call():
    """XLA's plan of the gradient: four 6-layer blocks keep their intermediates when called
    plainly; rematerialised, about one block's. (`jax.checkpoint` gives no such saving on
    XLA:CPU; see `equijax.nn.remat`.)"""
    params, x, table, index = _setup(20000)
    temp = [xla_memory(jax.jit(jax.grad(_loss(remat))).lower(params, x, table, index).compile())["temp"]
            for remat in (False, True)]
    assert temp[1] < 0.5 * temp[0], temp


def test_after_cotangent_keeps_values_and_integers():
    tree = {"f": jnp.arange(3.0), "i": jnp.arange(3)}
    out = after_cotangent(tree, jnp.array([jnp.nan, 1.0]))  # a NaN cotangent changes nothing
    np.testing.assert_array_equal(out["f"], tree["f"])
    assert out["i"].dtype == tree["i"].dtype
    np.testing.assert_array_equal(out["i"], tree["i"])
