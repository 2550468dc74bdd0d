"""The learned pair energy of direct-head models: its slope against finite differences, its
smooth cutoff, and its forces and virial against autodiff of the energy it adds (on the pure
functions and inside CHGNet)."""

import ase.build
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from equijax.graphs import BucketPolicy, atoms_to_graph, pad_batch
from equijax.graphs.crystal_graph import edge_vectors
from equijax.models.chgnet import CHGNet, CHGNetConfig
from equijax.nn.direct_heads import EV_PER_A3_TO_GPA, direct_forces, direct_stress
from equijax.nn.pair_energy import pair_energy, smooth_pair_basis
from equijax.potential import predict_padded

pytestmark = pytest.mark.usefixtures("fast_compiles")


def test_slope_is_the_derivative_and_the_basis_vanishes_at_the_cutoff():
    """``b'`` against central finite differences of ``b`` (float64 numpy reference step), and
    ``b``, ``b'`` zero at and beyond the cutoff but not before."""
    r = np.linspace(0.8, 6.5, 200)
    basis, slope = smooth_pair_basis(jnp.asarray(r), 6, cutoff=5.0)
    h = 1e-3
    plus, _ = smooth_pair_basis(jnp.asarray(r + h), 6, cutoff=5.0)
    minus, _ = smooth_pair_basis(jnp.asarray(r - h), 6, cutoff=5.0)
    inside = r < 5.0 - 2 * h
    np.testing.assert_allclose(np.asarray(slope)[inside],
                               ((np.asarray(plus) - np.asarray(minus)) / (2 * h))[inside],
                               atol=2e-3, rtol=2e-3)
    assert np.all(np.asarray(basis)[r >= 5.0] == 0) and np.all(np.asarray(slope)[r >= 5.0] == 0)
    assert np.abs(np.asarray(basis)[r < 4.5]).max() > 0.1
    near = np.abs(r - 5.0) < 0.05
    assert np.abs(np.asarray(basis)[near]).max() < 1e-3  # smooth: small just before the cutoff


def test_pair_forces_and_virial_equal_autodiff_of_the_pair_energy():
    """On a strained, rattled periodic cell with per-pair coefficients, `direct_forces` of the
    slopes equals −∂E/∂x and `direct_stress`'s virial of them equals (1/V) ∂E/∂ε of
    E = Σ_pairs u(r), differentiated through `edge_vectors` by jax.grad."""
    atoms = ase.build.bulk("NaCl", "rocksalt", 5.6) * (1, 1, 2)
    atoms.set_cell(atoms.cell.array @ np.array([[1.02, 0.03, 0.0], [0.0, 0.97, 0.02],
                                                [0.0, 0.0, 1.01]]), scale_atoms=True)
    atoms.rattle(0.1, seed=1)
    cutoff = 4.5
    graph = atoms_to_graph(atoms, cutoff=cutoff).atoms
    pair = np.asarray(graph.edges["pair"])
    n_pairs = int(pair.max()) + 1
    coefficients = jnp.asarray(np.random.default_rng(0).normal(size=(n_pairs, 5)), jnp.float32)

    def energy(positions, strain):
        deform = jnp.eye(3) + strain
        strained = graph._replace(
            nodes={**graph.nodes, "positions": positions @ deform.T},
            globals={**graph.globals, "cell": graph.globals["cell"] @ deform.T})
        lengths = jnp.linalg.norm(edge_vectors(strained, jnp), axis=1)
        return jnp.sum(pair_energy(coefficients[pair], lengths, cutoff)[0]) / 2.0  # 2 edges/pair

    positions = jnp.asarray(atoms.positions, jnp.float32)
    want_forces = -jax.grad(energy)(positions, jnp.zeros((3, 3)))
    want_stress = (jax.grad(energy, 1)(positions, jnp.zeros((3, 3))) / atoms.get_volume()
                   * EV_PER_A3_TO_GPA)

    vectors = np.asarray(edge_vectors(graph), np.float32)
    lengths = np.linalg.norm(vectors, axis=1)
    unit = vectors / lengths[:, None]
    pair_lengths = np.zeros(n_pairs, np.float32)
    pair_lengths[pair] = lengths
    _, slopes = pair_energy(coefficients, jnp.asarray(pair_lengths), cutoff)
    forces = direct_forces(slopes, pair, unit, graph.receivers, len(atoms))
    zeros = jnp.zeros_like(slopes)
    stress = direct_stress(zeros, zeros, pair, unit, np.zeros(len(pair), int),
                           np.array([atoms.get_volume()]), 1, force_weights=slopes,
                           lengths=lengths)[0]
    assert np.abs(want_forces).max() > 0.05 and np.abs(want_stress).max() > 0.5
    np.testing.assert_allclose(forces, want_forces, atol=1e-4)
    np.testing.assert_allclose(stress, want_stress, rtol=1e-4, atol=1e-3)


TINY = dict(atom_fea_dim=8, bond_fea_dim=8, angle_fea_dim=8, num_radial=5, num_angular=5,
            n_conv=2, atom_conv_hidden_dim=(8,), bond_conv_hidden_dim=(8,), mlp_hidden_dims=(8,),
            direct_hidden_dims=(8,), atom_graph_cutoff=4.5)


@pytest.mark.parametrize("direct_stress", ["independent", "virial_only"])
def test_chgnets_pair_energy_forces_are_its_energy_gradient(direct_stress):
    """In CHGNet with ``direct_pair_energy``: make the coefficients constants (the pair MLP's
    last layer: zero kernel, random bias) and the other heads silent (zero-initialised). Then
    the direct forces are exactly the energy's gradient minus the trunk's (autodiff of the
    model's own energy, `predict_padded(gradient_forces=True)`), and with ``virial_only`` so is
    the stress; the energy rises by the pair energy's sum."""
    structures = [ase.build.bulk("Cu", "fcc", 3.6, cubic=True), ase.build.bulk("NaCl", "rocksalt", 5.6)]
    for k, atoms in enumerate(structures):
        atoms.rattle(0.1, seed=k)
    batch, _ = pad_batch([atoms_to_graph(a, cutoff=4.5) for a in structures],
                         BucketPolicy(fixed_graphs=3, multiple=64))
    module = CHGNet(CHGNetConfig(**TINY, forces="direct", direct_pair_energy=4,
                                 direct_stress=direct_stress))
    params = module.init(jax.random.key(0), batch)
    last = params["params"]["pair_energy_mlp"]["Dense_1"]
    with_pair = jax.tree_util.tree_map(lambda x: x, params)
    with_pair["params"]["pair_energy_mlp"]["Dense_1"] = {
        "kernel": jnp.zeros_like(last["kernel"]),
        "bias": jnp.asarray([0.3, -0.2, 0.1, 0.05], jnp.float32)}

    def run(p, gradient_forces):
        return jax.device_get(jax.jit(lambda p, g: predict_padded(
            module, p, g, gradient_forces=gradient_forces))(p, batch))

    direct, grads = run(with_pair, False), run(with_pair, True)
    trunk = run(params, True)  # zero pair energy: the trunk's own gradients
    n = sum(len(a) for a in structures)
    pair_forces = grads["forces"][:n] - trunk["forces"][:n]
    assert np.abs(pair_forces).max() > 1e-2
    np.testing.assert_allclose(direct["forces"][:n], pair_forces, atol=2e-4)
    if direct_stress == "virial_only":
        np.testing.assert_allclose(direct["stress"][:2], grads["stress"][:2] - trunk["stress"][:2],
                                   atol=2e-3)
    else:  # the independent heads (zero-initialised) and no virial
        np.testing.assert_allclose(direct["stress"][:2], 0.0, atol=1e-6)
    assert np.all(np.abs(direct["energy"][:2] - trunk["energy"][:2]) > 1e-3)
