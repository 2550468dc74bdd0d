"""EquivariantPotential for every tensor-product kind: rotated, inverted, translated and permuted
structures give the same energy and rotated forces/stress; forces match finite differences."""

import ase.build
import jax
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from equijax.graphs import BucketPolicy, atoms_to_graph, pad_batch
from equijax.models.equivariant import EquivariantConfig, EquivariantPotential
from equijax.potential import predict_padded

pytestmark = pytest.mark.usefixtures("fast_compiles")

CONFIGS = {
    "gaunt_grid": {"tp": "gaunt_grid"},
    "cg-both-parities": {"tp": "cg", "parity": "both"},
    "vector_gaunt-s2mlp": {"tp": "vector_gaunt", "parity": "both", "self_interaction": "s2-mlp"},
    "gaunt_fourier-bessel": {"tp": "gaunt_fourier", "radial": "bessel-mlp"},
}


def _structures():
    copper = ase.build.bulk("Cu", "fcc", 3.6, cubic=True)
    copper.rattle(0.1, seed=0)
    salt = ase.build.bulk("NaCl", "rocksalt", 5.6)
    salt.rattle(0.1, seed=1)
    return [copper, salt]


def _transformed(atoms, matrix, shift, order):
    out = atoms[order]
    out.set_cell(atoms.cell.array @ matrix.T, scale_atoms=False)
    out.positions = atoms.positions[order] @ matrix.T + shift
    return out


@pytest.mark.parametrize("name", list(CONFIGS))
def test_symmetries(name):
    config = EquivariantConfig(channels=4, lmax=2, num_layers=1, **CONFIGS[name])
    module = EquivariantPotential(config)
    policy = BucketPolicy(fixed_graphs=2, multiple=64)
    rotation = Rotation.random(random_state=3).as_matrix()
    structures = _structures()
    predict = jax.jit(lambda p, g: predict_padded(module, p, g))
    batch, _ = pad_batch([atoms_to_graph(a, cutoff=config.cutoff) for a in structures], policy)
    params = module.init(jax.random.PRNGKey(0), batch)
    ref = predict(params, batch)
    n = [len(a) for a in structures]
    for matrix in (rotation, -rotation):  # proper rotation and rotation times inversion
        moved = [
            _transformed(
                a, matrix, np.array([0.3, -1.2, 2.0]), np.random.default_rng(7).permutation(len(a))
            )
            for a in structures
        ]
        batch2, _ = pad_batch([atoms_to_graph(a, cutoff=config.cutoff) for a in moved], policy)
        out = predict(params, batch2)
        np.testing.assert_allclose(out["energy"][:2], ref["energy"][:2], rtol=2e-5, atol=2e-5)
        start = 0
        for _a, count in zip(structures, n):
            order = np.random.default_rng(7).permutation(count)
            f_ref = np.asarray(ref["forces"][start : start + count])[order] @ matrix.T
            np.testing.assert_allclose(out["forces"][start : start + count], f_ref, atol=1e-4)
            start += count
        s_ref = np.einsum("ij,gjk,lk->gil", matrix, np.asarray(ref["stress"][:2]), matrix)
        np.testing.assert_allclose(out["stress"][:2], s_ref, atol=1e-3)


def test_forces_match_finite_differences():
    with jax.enable_x64(True):
        config = EquivariantConfig(channels=4, lmax=2, num_layers=1, tp="gaunt_grid")
        module = EquivariantPotential(config)
        atoms = _structures()[0]
        policy = BucketPolicy(fixed_graphs=1, multiple=64)

        predict = jax.jit(lambda p, g: predict_padded(module, p, g, False))

        def energy_and_forces(a):
            batch, _ = pad_batch([atoms_to_graph(a, cutoff=config.cutoff)], policy)
            out = predict(params, batch)
            return float(out["energy"][0]), np.asarray(out["forces"][: len(a)])

        batch, _ = pad_batch([atoms_to_graph(atoms, cutoff=config.cutoff)], policy)
        params = module.init(jax.random.PRNGKey(1), batch)
        _, forces = energy_and_forces(atoms)
        step = 1e-5
        for i, k in ((0, 0), (2, 1), (3, 2)):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[i, k] += step
            minus.positions[i, k] -= step
            fd = -(energy_and_forces(plus)[0] - energy_and_forces(minus)[0]) / (2 * step)
            assert abs(fd - forces[i, k]) < 1e-6 * max(1.0, abs(fd)), (i, k, fd, forces[i, k])


def test_bad_config_values_are_clear_errors():
    with pytest.raises(ValueError, match="tp"):
        EquivariantConfig(tp="bogus")
    with pytest.raises(ValueError, match="radial"):
        EquivariantConfig(radial="mlp")
