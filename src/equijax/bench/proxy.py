"""A CHGNet-sized message-passing proxy step, used to calibrate the load-balancing cost model
until the real model exists: per edge and per angle a gather -> gated MLP -> scatter, at CHGNet's
widths (64 features, 31 radial and angular basis functions), forward and backward.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from equijax.graphs.crystal_graph import CrystalGraph, edge_vectors

FEATURES = 64
NUM_BASIS = 31


def init_proxy_params(seed: int = 0, n_layers: int = 3) -> dict:
    """Random parameters of the proxy: an embedding and per layer two gated MLPs."""
    rng = np.random.default_rng(seed)

    def dense(n_in, n_out):
        return {
            "w": jnp.asarray(rng.normal(0, n_in**-0.5, (n_in, n_out)), jnp.float32),
            "b": jnp.zeros(n_out, jnp.float32),
        }

    layers = []
    for _ in range(n_layers):
        layers.append(
            {
                "atom_core": dense(2 * FEATURES + NUM_BASIS, FEATURES),
                "atom_gate": dense(2 * FEATURES + NUM_BASIS, FEATURES),
                "bond_core": dense(2 * FEATURES + NUM_BASIS, FEATURES),
                "bond_gate": dense(2 * FEATURES + NUM_BASIS, FEATURES),
            }
        )
    return {
        "embed": jnp.asarray(rng.normal(0, 1, (95, FEATURES)), jnp.float32),
        "bond_embed": dense(NUM_BASIS, FEATURES),
        "layers": layers,
    }


def _gated(p_core, p_gate, x):
    core = x @ p_core["w"] + p_core["b"]
    gate = x @ p_gate["w"] + p_gate["b"]
    return jax.nn.silu(core) * jax.nn.sigmoid(gate)


def proxy_energy(params: dict, graph: CrystalGraph) -> jax.Array:
    """Sum of per-atom outputs of the proxy network on a padded batch (scalar)."""
    a, b = graph.atoms, graph.bonds
    n_node = a.nodes["numbers"].shape[0]
    n_bond = b.nodes["edge"].shape[0]
    vec = edge_vectors(a, jnp).astype(jnp.float32)
    dist = jnp.linalg.norm(vec, axis=-1)
    freqs = jnp.arange(1, NUM_BASIS + 1, dtype=jnp.float32) * jnp.pi / 6.0
    rbf = jnp.sin(dist[:, None] * freqs) / dist[:, None]
    x = params["embed"][a.nodes["numbers"]]
    bond_rbf = rbf[b.nodes["edge"]]
    y = bond_rbf @ params["bond_embed"]["w"]
    unit = vec / dist[:, None]
    cos = jnp.sum(unit[b.edges["edge_ij"]] * unit[b.edges["edge_ik"]], axis=-1) * (1 - 1e-6)
    angle_basis = jnp.cos(jnp.arccos(cos)[:, None] * jnp.arange(NUM_BASIS, dtype=jnp.float32))
    for layer in params["layers"]:
        h = jnp.concatenate([x[a.receivers], x[a.senders], rbf], axis=-1)
        x = x + jax.ops.segment_sum(
            _gated(layer["atom_core"], layer["atom_gate"], h), a.receivers, n_node
        )
        h = jnp.concatenate([y[b.receivers], y[b.senders], angle_basis], axis=-1)
        y = y + jax.ops.segment_sum(
            _gated(layer["bond_core"], layer["bond_gate"], h), b.receivers, n_bond
        )
    return jnp.sum(x) + jnp.sum(y)


@jax.jit
def proxy_train_step(params: dict, graph: CrystalGraph):
    """Forward and backward of the proxy (the gradient with respect to the parameters)."""
    return jax.grad(proxy_energy)(params, graph)
