"""The learned three-body energy of direct-head models: Chebyshev polynomials against cos kθ,
and its forces and virial (through the edge-gradient sums) against autodiff of the energy it
adds, through `edge_vectors` on a strained periodic cell."""

import ase.build
import jax
import jax.numpy as jnp
import numpy as np

from equijax.graphs import atoms_to_graph
from equijax.graphs.crystal_graph import edge_vectors
from equijax.nn.angle_energy import angle_energy, chebyshev
from equijax.nn.direct_heads import EV_PER_A3_TO_GPA, edge_gradient_forces, edge_gradient_stress


def test_chebyshev_is_cos_k_theta():
    theta = np.linspace(0.0, np.pi, 50)
    got = np.asarray(chebyshev(jnp.asarray(np.cos(theta)), 6))
    np.testing.assert_allclose(got, np.cos(np.arange(6) * theta[:, None]), atol=1e-5)


def test_angle_energy_forces_and_stress_equal_autodiff_of_the_energy():
    """Σ_angles φ with per-angle coefficients on a strained, rattled silicon cell: the forces
    from the per-angle gradients (`edge_gradient_forces`) equal −∂E/∂x and their virial
    (`edge_gradient_stress`) equals (1/V) ∂E/∂ε, both by jax.grad of the energy as a function of
    positions and strain through `edge_vectors`."""
    atoms = ase.build.bulk("Si", "diamond", 5.43, cubic=True)
    atoms.set_cell(atoms.cell.array @ np.array([[1.02, 0.03, 0.0], [0.0, 0.97, 0.02],
                                                [0.0, 0.0, 1.01]]), scale_atoms=True)
    atoms.rattle(0.15, seed=4)
    graph = atoms_to_graph(atoms, cutoff=4.5)
    atom_graph = graph.atoms
    ij, ik = np.asarray(graph.bonds.edges["edge_ij"]), np.asarray(graph.bonds.edges["edge_ik"])
    coefficients = jnp.asarray(np.random.default_rng(3).normal(size=(len(ij), 4)), jnp.float32)
    cutoff = 3.0

    def energy(positions, strain):
        deform = jnp.eye(3) + strain
        strained = atom_graph._replace(
            nodes={**atom_graph.nodes, "positions": positions @ deform.T},
            globals={**atom_graph.globals, "cell": atom_graph.globals["cell"] @ deform.T})
        vectors = edge_vectors(strained, jnp)
        return jnp.sum(angle_energy(coefficients, vectors[ij], vectors[ik], cutoff)[0])

    positions = jnp.asarray(atoms.positions, jnp.float32)
    want_forces = -jax.grad(energy)(positions, jnp.zeros((3, 3)))
    want_stress = (jax.grad(energy, 1)(positions, jnp.zeros((3, 3))) / atoms.get_volume()
                   * EV_PER_A3_TO_GPA)

    vectors = jnp.asarray(edge_vectors(atom_graph), jnp.float32)
    _, grad_ij, grad_ik = angle_energy(coefficients, vectors[ij], vectors[ik], cutoff)
    n_edges = vectors.shape[0]
    edge_gradient = (jax.ops.segment_sum(grad_ij, ij, n_edges)
                     + jax.ops.segment_sum(grad_ik, ik, n_edges))
    forces = edge_gradient_forces(edge_gradient, atom_graph.senders, atom_graph.receivers,
                                  len(atoms))
    stress = edge_gradient_stress(edge_gradient, vectors, jnp.zeros(n_edges, int),
                                  jnp.asarray([atoms.get_volume()], jnp.float32), 1)[0]
    assert len(ij) > 0 and np.abs(want_forces).max() > 0.1 and np.abs(want_stress).max() > 0.5
    np.testing.assert_allclose(forces, want_forces, atol=5e-5)
    np.testing.assert_allclose(stress, want_stress, atol=5e-4)
    np.testing.assert_allclose(np.sum(np.asarray(forces), axis=0), 0.0, atol=1e-4)
