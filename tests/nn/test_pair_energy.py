"""The learned pair energy of direct-head models: its slope against finite differences, its
smooth cutoff, and its forces and virial against autodiff of the energy it adds (inside CHGNet:
tests/models/test_chgnet_direct_energies.py)."""

import ase.build
import jax.numpy as jnp
import numpy as np
import pytest

from equijax.graphs import atoms_to_graph
from equijax.graphs.crystal_graph import edge_vectors
from equijax.nn.direct_heads import direct_forces, direct_stress
from equijax.nn.pair_energy import pair_energy, smooth_pair_basis

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
    np.testing.assert_allclose(
        np.asarray(slope)[inside],
        ((np.asarray(plus) - np.asarray(minus)) / (2 * h))[inside],
        atol=2e-3,
        rtol=2e-3,
    )
    assert np.all(np.asarray(basis)[r >= 5.0] == 0) and np.all(np.asarray(slope)[r >= 5.0] == 0)
    assert np.abs(np.asarray(basis)[r < 4.5]).max() > 0.1
    near = np.abs(r - 5.0) < 0.05
    assert np.abs(np.asarray(basis)[near]).max() < 1e-3  # smooth: small just before the cutoff


def test_pair_forces_and_virial_equal_autodiff_of_the_pair_energy(autodiff_reference):
    """On a strained, rattled periodic cell with per-pair coefficients, `direct_forces` of the
    slopes equals −∂E/∂x and `direct_stress`'s virial of them equals (1/V) ∂E/∂ε of
    E = Σ_pairs u(r), differentiated through `edge_vectors` by jax.grad."""
    atoms = ase.build.bulk("NaCl", "rocksalt", 5.6) * (1, 1, 2)
    atoms.set_cell(
        atoms.cell.array @ np.array([[1.02, 0.03, 0.0], [0.0, 0.97, 0.02], [0.0, 0.0, 1.01]]),
        scale_atoms=True,
    )
    atoms.rattle(0.1, seed=1)
    cutoff = 4.5
    graph = atoms_to_graph(atoms, cutoff=cutoff).atoms
    pair = np.asarray(graph.edges["pair"])
    n_pairs = int(pair.max()) + 1
    coefficients = jnp.asarray(np.random.default_rng(0).normal(size=(n_pairs, 5)), jnp.float32)

    want_forces, want_stress = autodiff_reference(
        graph,
        lambda v: (
            jnp.sum(pair_energy(coefficients[pair], jnp.linalg.norm(v, axis=1), cutoff)[0]) / 2.0
        ),  # two directed edges per pair
        atoms.get_volume(),
    )

    vectors = np.asarray(edge_vectors(graph), np.float32)
    lengths = np.linalg.norm(vectors, axis=1)
    unit = vectors / lengths[:, None]
    pair_lengths = np.zeros(n_pairs, np.float32)
    pair_lengths[pair] = lengths
    _, slopes = pair_energy(coefficients, jnp.asarray(pair_lengths), cutoff)
    forces = direct_forces(slopes, pair, unit, graph.receivers, len(atoms))
    zeros = jnp.zeros_like(slopes)
    stress = direct_stress(
        zeros,
        zeros,
        pair,
        unit,
        np.zeros(len(pair), int),
        np.array([atoms.get_volume()]),
        1,
        force_weights=slopes,
        lengths=lengths,
    )[0]
    assert np.abs(want_forces).max() > 0.05 and np.abs(want_stress).max() > 0.5
    np.testing.assert_allclose(forces, want_forces, atol=1e-4)
    np.testing.assert_allclose(stress, want_stress, rtol=1e-4, atol=1e-3)
