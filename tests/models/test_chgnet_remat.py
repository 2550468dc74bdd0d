"""`CHGNetConfig(remat=True)` rematerialises each block in the backward pass: the same energies,
forces, stress and parameter gradients as without it, and a smaller compiled training gradient."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from equijax.graphs import BucketPolicy, atoms_to_graph, pad_batch
from equijax.models.chgnet import CHGNet, CHGNetConfig
from equijax.potential import predict_padded

pytestmark = pytest.mark.usefixtures("fast_compiles")


def test_remat_changes_memory_not_values(bench_structures):
    config = CHGNetConfig(
        atom_fea_dim=32,
        bond_fea_dim=32,
        angle_fea_dim=32,
        n_conv=3,
        atom_conv_hidden_dim=(32,),
        bond_conv_hidden_dim=(32,),
        mlp_hidden_dims=(32,),
    )
    batch, _ = pad_batch([atoms_to_graph(a) for a in bench_structures[:2]], BucketPolicy())
    plain, remat = CHGNet(config), CHGNet(dataclasses.replace(config, remat=True))
    params = plain.init(jax.random.key(0), batch)

    def loss(module):
        def f(p, g):
            out = predict_padded(module, p, g)
            return (
                jnp.sum(out["energy"] ** 2)
                + jnp.sum(out["forces"] ** 2)
                + jnp.sum(out["stress"] ** 2)
            )

        return jax.jit(jax.value_and_grad(f))

    compiled = [loss(m).lower(params, batch).compile() for m in (plain, remat)]
    (v1, g1), (v2, g2) = (c(params, batch) for c in compiled)
    np.testing.assert_allclose(v2, v1, rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2)):
        np.testing.assert_allclose(b, a, rtol=2e-4, atol=1e-6)
    temp = [c.memory_analysis().temp_size_in_bytes for c in compiled]
    assert temp[1] < temp[0], temp


def test_remat_with_direct_heads_halves_the_training_step_memory(bench_structures):
    """Direct heads (first-order training) rematerialise with `remat_call`: the same outputs and
    parameter gradients as the plain model (the reference), and at most 60% of its compiled
    memory on every backend, CPU included."""
    config = CHGNetConfig(
        atom_fea_dim=32,
        bond_fea_dim=32,
        angle_fea_dim=32,
        n_conv=3,
        atom_conv_hidden_dim=(32,),
        bond_conv_hidden_dim=(32,),
        mlp_hidden_dims=(32,),
        forces="direct",
        direct_angle_stress=True,
    )
    batch, _ = pad_batch([atoms_to_graph(a) for a in bench_structures[:3]], BucketPolicy())
    plain, remat = CHGNet(config), CHGNet(dataclasses.replace(config, remat=True))
    params = plain.init(jax.random.key(1), batch)
    params = jax.tree_util.tree_map(lambda p: p + 0.01, params)  # heads start at zero otherwise

    def loss(module):
        def f(p, g):
            out = module.apply(p, g)
            return (
                jnp.sum(out["energy"] ** 2)
                + jnp.sum(out["forces"] ** 2)
                + jnp.sum(out["stress"] ** 2)
                + jnp.sum(out["magmoms"] ** 2)
            )

        return jax.jit(jax.value_and_grad(f))

    compiled = [loss(m).lower(params, batch).compile() for m in (plain, remat)]
    (v1, g1), (v2, g2) = (c(params, batch) for c in compiled)
    np.testing.assert_allclose(v2, v1, rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2)):
        scale = float(np.abs(a).max()) + 1e-6
        np.testing.assert_allclose(np.asarray(b) / scale, np.asarray(a) / scale, atol=1e-4)
    temp = [c.memory_analysis().temp_size_in_bytes for c in compiled]
    assert temp[1] < 0.6 * temp[0], temp
