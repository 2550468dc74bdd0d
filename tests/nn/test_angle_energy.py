"""The learned three-body energy of direct-head models: Chebyshev polynomials against cos kθ,
and its forces and virial (through the edge-gradient sums) against autodiff of the energy it
adds, through `edge_vectors` on a strained periodic cell."""

import jax
import jax.numpy as jnp
import numpy as np

from equijax.graphs.crystal_graph import edge_vectors
from equijax.nn.angle_energy import angle_energy, chebyshev
from equijax.nn.direct_heads import edge_gradient_forces, edge_gradient_stress


def test_chebyshev_is_cos_k_theta():
    theta = np.linspace(0.0, np.pi, 50)
    got = np.asarray(chebyshev(jnp.asarray(np.cos(theta)), 6))
    np.testing.assert_allclose(got, np.cos(np.arange(6) * theta[:, None]), atol=1e-5)


def test_angle_energy_forces_and_stress_equal_autodiff_of_the_energy(
    strained_silicon, autodiff_reference
):
    """Σ_angles φ with per-angle coefficients on a strained, rattled silicon cell: the forces
    from the per-angle gradients (`edge_gradient_forces`) equal −∂E/∂x and their virial
    (`edge_gradient_stress`) equals (1/V) ∂E/∂ε, both by jax.grad of the energy as a function of
    positions and strain through `edge_vectors`."""
    atoms, graph = strained_silicon
    atom_graph = graph.atoms
    ij, ik = np.asarray(graph.bonds.edges["edge_ij"]), np.asarray(graph.bonds.edges["edge_ik"])
    coefficients = jnp.asarray(np.random.default_rng(3).normal(size=(len(ij), 4)), jnp.float32)
    cutoff = 3.0
    want_forces, want_stress = autodiff_reference(
        atom_graph,
        lambda v: jnp.sum(angle_energy(coefficients, v[ij], v[ik], cutoff)[0]),
        atoms.get_volume(),
    )

    vectors = jnp.asarray(edge_vectors(atom_graph), jnp.float32)
    _, grad_ij, grad_ik = angle_energy(coefficients, vectors[ij], vectors[ik], cutoff)
    n_edges = vectors.shape[0]
    edge_gradient = jax.ops.segment_sum(grad_ij, ij, n_edges) + jax.ops.segment_sum(
        grad_ik, ik, n_edges
    )
    forces = edge_gradient_forces(
        edge_gradient, atom_graph.senders, atom_graph.receivers, len(atoms)
    )
    stress = edge_gradient_stress(
        edge_gradient,
        vectors,
        jnp.zeros(n_edges, int),
        jnp.asarray([atoms.get_volume()], jnp.float32),
        1,
    )[0]
    assert len(ij) > 0 and np.abs(want_forces).max() > 0.1 and np.abs(want_stress).max() > 0.5
    np.testing.assert_allclose(forces, want_forces, atol=5e-5)
    np.testing.assert_allclose(stress, want_stress, atol=5e-4)
    np.testing.assert_allclose(np.sum(np.asarray(forces), axis=0), 0.0, atol=1e-4)
