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
    config = CHGNetConfig(atom_fea_dim=32, bond_fea_dim=32, angle_fea_dim=32, n_conv=3,
                          atom_conv_hidden_dim=(32,), bond_conv_hidden_dim=(32,),
                          mlp_hidden_dims=(32,))
    batch, _ = pad_batch([atoms_to_graph(a) for a in bench_structures[:2]], BucketPolicy())
    plain, remat = CHGNet(config), CHGNet(dataclasses.replace(config, remat=True))
    params = plain.init(jax.random.key(0), batch)

    def loss(module):
        def f(p, g):
            out = predict_padded(module, p, g)
            return jnp.sum(out["energy"] ** 2) + jnp.sum(out["forces"] ** 2) + jnp.sum(out["stress"] ** 2)
        return jax.jit(jax.value_and_grad(f))

    compiled = [loss(m).lower(params, batch).compile() for m in (plain, remat)]
    (v1, g1), (v2, g2) = (c(params, batch) for c in compiled)
    np.testing.assert_allclose(v2, v1, rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2)):
        np.testing.assert_allclose(b, a, rtol=2e-4, atol=1e-6)
    temp = [c.memory_analysis().temp_size_in_bytes for c in compiled]
    assert temp[1] < temp[0], temp
