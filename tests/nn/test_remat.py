"""`remat_call`: the same values and gradients as a plain call (first and second order, inside
shard_map too), and really less memory than a plain call where `jax.checkpoint` may not give it."""

import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
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
            return jnp.sum(g**2)

        return jax.grad(f)

    # these reach 1e6; in float64 the two agree to 1e-15 of that, so compare to each leaf's scale
    for a, b in zip(
        jax.tree_util.tree_leaves(jax.jit(outer(True))(params)),
        jax.tree_util.tree_leaves(jax.jit(outer(False))(params)),
    ):
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

        return jax.jit(
            jax.shard_map(
                per_device, mesh=mesh, in_specs=(P(), P("data"), P(), P("data")), out_specs=P()
            )
        )

    args = (jax.tree_util.tree_map(rep, params), shard(x), rep(table), shard(index))
    for a, b in zip(
        jax.tree_util.tree_leaves(grads(True)(*args)),
        jax.tree_util.tree_leaves(grads(False)(*args)),
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_remat_call_keeps_less_memory_than_a_plain_call():
    """XLA's plan of the gradient: four 6-layer blocks keep their intermediates when called
    plainly; rematerialised, about one block's. (`jax.checkpoint` gives no such saving on
    XLA:CPU; see `equijax.nn.remat`.)"""
    params, x, table, index = _setup(20000)
    temp = [
        xla_memory(jax.jit(jax.grad(_loss(remat))).lower(params, x, table, index).compile())["temp"]
        for remat in (False, True)
    ]
    assert temp[1] < 0.5 * temp[0], temp


_TWO_DEVICES = textwrap.dedent("""
    import jax, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    import test_remat as t
    assert jax.device_count() == 2
    params, x, table, index = t._setup(48)
    mesh = jax.make_mesh((2,), ("data",))
    put = lambda a, spec: jax.device_put(a, NamedSharding(mesh, spec))
    args = (jax.tree_util.tree_map(lambda a: put(a, P()), params), put(x, P("data")),
            put(table, P()), put(index, P("data")))
    def grads(remat):
        f = lambda p, xs, tb, idx: jax.grad(t._loss(remat), (0, 2))(p, xs, tb, idx)
        return jax.jit(jax.shard_map(f, mesh=mesh, in_specs=(P(), P("data"), P(), P("data")),
                                     out_specs=P()))(*args)
    whole = jax.grad(t._loss(False), (0, 2))(params, x, table, index)  # one device, all rows
    for got in (grads(True), grads(False)):
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(whole)):
            scale = float(np.abs(b).max())  # rounding of two half sums: ~1e-5 of the scale
            np.testing.assert_allclose(np.asarray(a) / scale, np.asarray(b) / scale, atol=1e-4)
    print("ok")
""")


def test_two_devices_sum_the_replicated_gradients_like_one_device_on_all_rows():
    """On 2 simulated devices, each with half the rows, the gradients of the replicated params and
    of a replicated input equal one device's on all rows (a pmean or a missing sum would not)."""
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.path.dirname(__file__),
    )
    proc = subprocess.run(
        [sys.executable, "-c", _TWO_DEVICES], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]


def test_after_cotangent_keeps_values_and_integers():
    tree = {"f": jnp.arange(3.0), "i": jnp.arange(3)}
    out = after_cotangent(tree, jnp.array([jnp.nan, 1.0]))  # a NaN cotangent changes nothing
    np.testing.assert_array_equal(out["f"], tree["f"])
    assert out["i"].dtype == tree["i"].dtype
    np.testing.assert_array_equal(out["i"], tree["i"])
    # integer (float0), empty and complex cotangent leaves: skipped or read by their real part
    float0 = np.zeros(2, dtype=jax.dtypes.float0)
    for cotangent in ((float0, jnp.ones(0)), (float0,), (jnp.array([1j]),)):
        np.testing.assert_array_equal(after_cotangent(tree, cotangent)["f"], tree["f"])


def test_modules_with_other_collections_are_refused():
    class Counting(nn.Module):
        @nn.compact
        def __call__(self, x):
            seen = self.variable("stats", "seen", jnp.zeros, ())
            seen.value = seen.value + 1
            return nn.Dense(3)(x)

    class Outer(nn.Module):
        @nn.compact
        def __call__(self, x):
            return remat_call(Counting(), x)

    x = jnp.ones((2, 3))
    variables = Outer().init(jax.random.key(0), x)
    with pytest.raises(ValueError, match=r"variables other than params \(\['stats'\]\)"):
        jax.grad(lambda v: jnp.sum(Outer().apply(v, x, mutable=["stats"])[0]))(variables)
