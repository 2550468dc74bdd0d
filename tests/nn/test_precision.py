"""Reduced-precision matmuls: the CPU emulation against an independent numpy rounding
(ml_dtypes' bfloat16 and bit-level TF32 rounding), its reach into every CHGNet Dense layer (also
under remat), and the errors for unknown names and uncovered models."""

import ase.build
import flax.linen as nn
import jax
import ml_dtypes
import numpy as np
import pytest

from equijax.graphs import BucketPolicy, atoms_to_graph, pad_batch
from equijax.models.chgnet import CHGNet, CHGNetConfig
from equijax.models.equivariant import EquivariantConfig, EquivariantPotential
from equijax.nn.mlp import MLP
from equijax.nn.precision import (
    check_emulation_covers,
    emulated,
    matmul_precision,
    round_mantissa,
    with_matmul_precision,
)

pytestmark = pytest.mark.usefixtures("fast_compiles")


def _numpy_round(x: np.ndarray, name: str) -> np.ndarray:
    """float32 rounded to nearest even at bf16 (via ml_dtypes) or TF32 (13 low mantissa bits
    dropped, by integer arithmetic on the bit pattern)."""
    x = np.asarray(x, np.float32)
    if name == "bf16":
        return x.astype(ml_dtypes.bfloat16).astype(np.float32)
    bits = x.view(np.uint32).astype(np.uint64)
    half, low = 1 << 12, (1 << 13) - 1
    odd = (bits >> 13) & 1
    rounded = ((bits + half - 1 + odd) & ~np.uint64(low)).astype(np.uint32)
    return rounded.view(np.float32)


@pytest.mark.parametrize("name", ["tf32", "bf16"])
def test_round_mantissa_matches_numpy_rounding(name):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=4096) * 10.0 ** rng.uniform(-6, 6, size=4096)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(round_mantissa(x, name)), _numpy_round(x, name))


@pytest.mark.parametrize("name", ["tf32", "bf16"])
def test_emulated_dense_is_a_float64_product_of_rounded_operands(name):
    """An MLP under `matmul_precision` on CPU equals numpy's float64 forward pass with every
    layer's input and kernel rounded first, and differs from float32 (the rounding is live)."""
    assert emulated(name, "cpu")
    mlp = MLP(5, hidden=(16,), act="silu")
    x = np.random.default_rng(1).normal(size=(32, 7)).astype(np.float32)
    params = mlp.init(jax.random.key(0), x)
    params = jax.tree_util.tree_map(lambda p: p + 0.1, params)  # non-zero biases too
    with matmul_precision(name):
        got = np.asarray(jax.jit(mlp.apply)(params, x))
    full = np.asarray(jax.jit(mlp.apply)(params, x))

    layers = [
        params["params"][k] for k in sorted(params["params"], key=lambda k: int(k.split("_")[1]))
    ]
    h = x.astype(np.float64)
    for i, layer in enumerate(layers):
        h = _numpy_round(h, name).astype(np.float64) @ _numpy_round(
            layer["kernel"], name
        ) + np.asarray(layer["bias"], np.float64)
        if i < len(layers) - 1:
            h = h / (1.0 + np.exp(-h))
        h = h.astype(np.float32)
    np.testing.assert_allclose(got, h, rtol=2e-5, atol=2e-5)
    assert np.abs(got - full).max() > 10 * np.abs(got - h).max()


def test_emulation_reaches_every_chgnet_dense_also_under_remat():
    """Rounding every Dense kernel of the params beforehand changes nothing when emulating (the
    layers round them anyway), and plain, rematerialised and unfused-gate (core and gate first
    layers apart) CHGNet agree under emulation: so each matmul rounds its kernel, inside
    `nn.remat` blocks and in the gated MLPs' fused first layers too."""
    atoms = ase.build.bulk("NaCl", "rocksalt", 5.6)
    atoms.rattle(0.1, seed=0)
    batch, _ = pad_batch(
        [atoms_to_graph(atoms, cutoff=5.0)], BucketPolicy(fixed_graphs=1, multiple=64)
    )
    small = {
        "atom_fea_dim": 8,
        "bond_fea_dim": 8,
        "angle_fea_dim": 8,
        "num_radial": 5,
        "num_angular": 5,
        "n_conv": 3,
        "atom_conv_hidden_dim": (8,),
        "bond_conv_hidden_dim": (8,),
        "mlp_hidden_dims": (8,),
        "atom_graph_cutoff": 5.0,
    }
    plain, remat = CHGNet(CHGNetConfig(**small)), CHGNet(CHGNetConfig(**small, remat=True))
    params = plain.init(jax.random.key(0), batch)
    params = jax.tree_util.tree_map(lambda p: p + 0.05, params)
    rounded = jax.tree_util.tree_map_with_path(
        lambda path, p: (
            round_mantissa(p, "bf16") if jax.tree_util.keystr(path).endswith("['kernel']") else p
        ),
        params,
    )

    def magmoms(module, p):
        return np.asarray(jax.jit(module.apply)(p, batch)["magmoms"])

    with matmul_precision("bf16"):
        emulated_out = magmoms(plain, params)
        np.testing.assert_array_equal(magmoms(plain, rounded), emulated_out)
        np.testing.assert_allclose(magmoms(remat, params), emulated_out, rtol=1e-6, atol=1e-6)
        unfused = CHGNet(CHGNetConfig(**small, fused_gates=False))
        np.testing.assert_allclose(magmoms(unfused, params), emulated_out, rtol=1e-5, atol=1e-6)
    assert np.abs(magmoms(plain, params) - emulated_out).max() > 1e-4


def test_bad_names_and_uncovered_models_raise():
    with (
        pytest.raises(ValueError, match="one of default, float32, tf32, bf16"),
        matmul_precision("fp16"),
    ):
        pass
    with pytest.raises(ValueError, match="one of"):
        with_matmul_precision(lambda: None, "half")
    equivariant = EquivariantPotential(EquivariantConfig())
    with pytest.raises(ValueError, match="does not cover"):
        check_emulation_covers(equivariant.config.DENSE_ONLY, "bf16")
    check_emulation_covers(equivariant.config.DENSE_ONLY, "float32")  # nothing to emulate
    check_emulation_covers(CHGNet().config.DENSE_ONLY, "bf16")
    assert not emulated("bf16", "gpu") and not emulated("default", "cpu")


def test_dense_with_its_own_dot_general_is_left_alone():
    """A layer that sets its own ``dot_general`` keeps it (the emulation does not override)."""
    calls = []

    def own(lhs, rhs, *args, **kwargs):
        calls.append(1)
        return jax.lax.dot_general(lhs, rhs, *args, **kwargs)

    dense = nn.Dense(3, dot_general=own)
    x = np.ones((2, 4), np.float32)
    params = dense.init(jax.random.key(0), x)
    with matmul_precision("bf16"):
        dense.apply(params, x)
    assert calls


def test_one_jitted_function_compiles_once_per_precision():
    """The emulated precision is part of jit's cache key: the same jitted function gives rounded
    results inside the context and float32 ones again outside it (no stale trace)."""
    mlp = MLP(5, hidden=(16,), act="silu")
    x = np.random.default_rng(2).normal(size=(8, 7)).astype(np.float32)
    params = mlp.init(jax.random.key(0), x)
    apply = jax.jit(mlp.apply)
    before = np.asarray(apply(params, x))
    with matmul_precision("bf16"):
        rounded = np.asarray(apply(params, x))
    after = np.asarray(apply(params, x))
    np.testing.assert_array_equal(after, before)
    assert np.abs(rounded - before).max() > 1e-4
