"""CHGNet's bypasses give the original computation's values: the bond-graph radial weights,
computed only for pairs in the bond graph, equal the weights computed for every pair (as the
reference does) on every row a bond convolution reads, and the rows it skips are exactly zero;
factorized messages give the concatenated messages' predictions and parameter gradients."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from equijax.graphs import BucketPolicy, atoms_to_graph, pad_batch, padding_masks
from equijax.graphs.crystal_graph import edge_vectors
from equijax.models.chgnet import PRESETS, CHGNet, pair_lengths
from equijax.models.chgnet.pretrained import from_pretrained
from equijax.nn.radial import RadialBessel
from equijax.potential import predict_padded

# jax_disable_most_optimizations (XLA backend -O0): about half the compile time; results agree
# to rounding (the tolerances here are far above it)
pytestmark = pytest.mark.usefixtures("fast_compiles")


@pytest.fixture(scope="module")
def pretrained():
    return from_pretrained("0.3.0")


def test_bond_graph_weights_only_for_bonds_equal_all_pairs(pretrained, bench_structures):
    module, params = pretrained
    cfg = PRESETS["0.3.0"]
    graphs = [atoms_to_graph(a) for a in bench_structures[:6]]
    batch, _ = pad_batch(graphs, BucketPolicy())
    atoms, bonds = batch.atoms, batch.bonds
    lengths = jnp.linalg.norm(edge_vectors(atoms, jnp), axis=-1)
    n_pairs = (atoms.senders.shape[0] + 1) // 2
    undirected = pair_lengths(lengths, atoms.edges["pair"], n_pairs)
    rbf = RadialBessel(cfg.num_radial, cfg.bond_graph_cutoff, cfg.cutoff_coeff, cfg.learnable_rbf)
    dense = nn.Dense(cfg.bond_fea_dim, use_bias=False)
    p_rbf, p_dense = (
        {"params": params["params"]["rbf_bg"]},
        {"params": params["params"]["bond_weights_bg"]},
    )
    original = dense.apply(p_dense, rbf.apply(p_rbf, undirected))  # every pair, as the reference
    bond_pair = np.asarray(bonds.nodes["pair"])
    bypass = np.zeros_like(original).copy()
    bypass[bond_pair] = dense.apply(p_dense, rbf.apply(p_rbf, undirected[bond_pair]))
    read = np.unique(
        np.concatenate(
            [bond_pair[np.asarray(bonds.receivers)], bond_pair[np.asarray(bonds.senders)]]
        )
    )
    np.testing.assert_allclose(bypass[read], np.asarray(original)[read], rtol=1e-6, atol=1e-7)
    skipped = np.setdiff1d(np.arange(n_pairs), bond_pair)
    real_pairs = np.asarray(atoms.edges["pair"])[np.asarray(padding_masks(batch)["edge"])]
    real = np.isin(skipped, real_pairs)  # padding pair slots hold a dummy 1 Å length
    assert skipped.size > 3 * bond_pair.size  # the bypass saves most of the work
    np.testing.assert_array_equal(np.asarray(original)[skipped[real]], 0.0)
    # the model with the bypass still reproduces itself under jit on the same batch
    out = jax.jit(module.apply)(params, batch)
    assert np.isfinite(np.asarray(out["energy"])).all()


def test_factorized_messages_equal_concatenated_messages(pretrained, bench_structures):
    """The default messages (atom/bond features multiplied before they are gathered, the gated
    MLPs' core and gate first layers as one product) give the plain computation's
    (concatenate, then multiply, core and gate apart) energy, forces, stress and magmoms, and
    the same parameter gradients of a loss on all four (second derivatives included)."""
    module, params = pretrained
    assert module.config.factorized_messages and module.config.fused_gates
    concatenated = CHGNet(
        dataclasses.replace(module.config, factorized_messages=False, fused_gates=False)
    )
    batch, _ = pad_batch([atoms_to_graph(a) for a in bench_structures[6:9]], BucketPolicy())
    real = np.asarray(padding_masks(batch)["node"])

    def loss(p, g, m):
        out = predict_padded(m, p, g)
        return (
            jnp.sum(out["energy"] ** 2)
            + jnp.sum(out["forces"] ** 2)
            + jnp.sum(out["stress"] ** 2)
            + jnp.sum(out["magmoms"] ** 2)
        ), out

    (_, want), want_grad = jax.jit(
        jax.value_and_grad(lambda p, g: loss(p, g, concatenated), has_aux=True)
    )(params, batch)
    (_, got), got_grad = jax.jit(jax.value_and_grad(lambda p, g: loss(p, g, module), has_aux=True))(
        params, batch
    )
    np.testing.assert_allclose(got["energy"], want["energy"], rtol=1e-6, atol=1e-5)
    for key in ("forces", "magmoms"):
        np.testing.assert_allclose(
            np.asarray(got[key])[real], np.asarray(want[key])[real], rtol=1e-4, atol=1e-5
        )
    np.testing.assert_allclose(got["stress"], want["stress"], rtol=1e-4, atol=1e-4)
    for (path, g), w in zip(
        jax.tree_util.tree_leaves_with_path(got_grad), jax.tree_util.tree_leaves(want_grad)
    ):
        scale = float(np.abs(w).max()) + 1e-6  # float32 second derivatives: ~1e-4 of the max
        np.testing.assert_allclose(
            np.asarray(g) / scale,
            np.asarray(w) / scale,
            atol=2e-3,
            err_msg=jax.tree_util.keystr(path),
        )
