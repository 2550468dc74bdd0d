"""Direct force/stress heads: the pure functions against explicit loops over pairs, and CHGNet /
EquivariantPotential with ``forces="direct"``: exact rotation/inversion equivariance, permutation
invariance, symmetric stress, zero net force, and the energy of the shared trunk unchanged."""

import ase.build
import jax
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from equijax.graphs import BucketPolicy, atoms_to_graph, pad_batch
from equijax.graphs.crystal_graph import edge_vectors
from equijax.models.chgnet import CHGNet, CHGNetConfig
from equijax.models.equivariant import EquivariantConfig, EquivariantPotential
from equijax.nn.direct_heads import (
    angle_edge_gradient,
    angle_stress,
    direct_forces,
    direct_stress,
    edge_gradient_forces,
)
from equijax.potential import predict_padded
from equijax.units import EV_PER_A3_TO_GPA

pytestmark = pytest.mark.usefixtures("fast_compiles")


TINY_CHGNET = dict(
    atom_fea_dim=8,
    bond_fea_dim=8,
    angle_fea_dim=8,
    num_radial=5,
    num_angular=5,
    n_conv=2,
    atom_conv_hidden_dim=(8,),
    bond_conv_hidden_dim=(8,),
    mlp_hidden_dims=(8,),
    direct_hidden_dims=(8,),
    atom_graph_cutoff=4.5,
)
MODELS = {
    "chgnet": lambda forces: CHGNet(CHGNetConfig(**TINY_CHGNET, forces=forces)),
    "chgnet_angle_stress": lambda forces: CHGNet(
        CHGNetConfig(**TINY_CHGNET, forces=forces, direct_angle_stress=forces == "direct")
    ),
    # the physical heads: three-body forces, a learned pair energy (an energy term, which the
    # conservative model keeps too), stress the virial of the force terms alone
    "chgnet_physical": lambda forces: CHGNet(
        CHGNetConfig(
            **TINY_CHGNET,
            forces=forces,
            direct_pair_energy=4,
            **(
                dict(direct_angle_forces=True, direct_stress="virial_only")
                if forces == "direct"
                else {}
            ),
        )
    ),
    "equivariant": lambda forces: EquivariantPotential(
        EquivariantConfig(channels=4, lmax=1, num_layers=1, cutoff=4.5, forces=forces)
    ),
}


def _structures():
    copper = ase.build.bulk("Cu", "fcc", 3.6, cubic=True)
    copper.rattle(0.1, seed=0)
    salt = ase.build.bulk("NaCl", "rocksalt", 5.6) * (1, 1, 2)
    salt.rattle(0.1, seed=1)
    return [copper, salt]


def test_pure_heads_match_loops_over_pairs():
    """`direct_forces` / `direct_stress` on a real periodic graph against explicit Python loops
    over its undirected pairs (each pair's weight applied once to i with r̂_ij and once to j)."""
    atoms = _structures()[1]
    graph = atoms_to_graph(atoms, cutoff=4.5).atoms
    vectors = edge_vectors(graph)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    pair = graph.edges["pair"]
    n_pairs = int(pair.max()) + 1
    rng = np.random.default_rng(0)
    w_f, w_1, w_0 = rng.normal(size=(3, n_pairs))
    forces = direct_forces(w_f, pair, unit, graph.receivers, len(atoms))
    volume = np.array([atoms.get_volume()])
    stress = direct_stress(w_1, w_0, pair, unit, np.zeros(len(pair), int), volume, 1)
    want_f = np.zeros((len(atoms), 3))
    want_s = np.zeros((3, 3))
    seen = set()
    for e in range(len(pair)):
        want_f[graph.receivers[e]] += w_f[pair[e]] * unit[e]
        if pair[e] not in seen:
            seen.add(pair[e])
            want_s += w_1[pair[e]] * np.outer(unit[e], unit[e]) + w_0[pair[e]] * np.eye(3)
    np.testing.assert_allclose(forces, want_f, atol=1e-5)
    np.testing.assert_allclose(
        stress[0], want_s * EV_PER_A3_TO_GPA / volume[0], rtol=1e-5, atol=1e-5
    )


def test_angle_stress_matches_a_loop_over_ase_neighbour_triplets():
    """`angle_stress` over the bond graph's angles against an explicit loop over every ordered
    pair of distinct neighbours j ≠ k (within 3 Å, periodic images included) of every atom from
    ASE's neighbour list, with a weight of the angle and the two bond lengths that differs
    between the orderings (j, k) and (k, j)."""
    from ase.neighborlist import neighbor_list

    atoms = ase.build.bulk("Si", "diamond", 5.43, cubic=True)
    atoms.rattle(0.15, seed=4)
    graph = atoms_to_graph(atoms, cutoff=4.5)
    vectors = edge_vectors(graph.atoms)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    ij, ik = graph.bonds.edges["edge_ij"], graph.bonds.edges["edge_ik"]
    u_ij, u_ik = unit[ij], unit[ik]
    lengths = np.linalg.norm(vectors, axis=1)
    # differs between the orderings (j, k) and (k, j): a missing symmetrisation would show
    weights = np.sum(u_ij * u_ik, axis=1) + 2.0 + 3.0 * lengths[ij] - lengths[ik]
    volume = np.array([atoms.get_volume()])
    stress = angle_stress(weights, u_ij, u_ik, np.zeros(len(weights), int), volume, 1)

    centers, vecs = neighbor_list("iD", atoms, 3.0)
    want = np.zeros((3, 3))
    for i in range(len(atoms)):
        norms = np.linalg.norm(vecs[centers == i], axis=1)
        around = vecs[centers == i] / norms[:, None]
        for j, a in enumerate(around):
            for k, b in enumerate(around):
                if j != k:
                    weight = a @ b + 2.0 + 3.0 * norms[j] - norms[k]
                    want += weight * (np.outer(a, b) + np.outer(b, a)) / 2.0
    assert len(weights) > 0
    np.testing.assert_allclose(stress[0], want * EV_PER_A3_TO_GPA / volume[0], rtol=1e-5, atol=1e-4)


def test_virial_term_gives_a_pair_potentials_forces_and_stress():
    """With the pair weights w_f = φ'(r) of a Lennard-Jones potential, `direct_forces` and the
    virial term of `direct_stress` equal ASE's LennardJones calculator forces and stress (an
    analytic, independent implementation) on a strained, rattled periodic argon cell."""
    from ase.calculators.lj import LennardJones

    sigma, epsilon, cutoff = 3.4, 0.0104, 7.5
    atoms = ase.build.bulk("Ar", "fcc", 5.3, cubic=True) * (2, 2, 2)
    atoms.set_cell(
        atoms.cell.array @ np.array([[1.02, 0.03, 0.0], [0.0, 0.97, 0.02], [0.0, 0.0, 1.01]]),
        scale_atoms=True,
    )
    atoms.rattle(0.08, seed=2)
    atoms.calc = LennardJones(sigma=sigma, epsilon=epsilon, rc=cutoff, smooth=False)
    graph = atoms_to_graph(atoms, cutoff=cutoff).atoms
    vectors = np.asarray(edge_vectors(graph), np.float64)
    lengths = np.linalg.norm(vectors, axis=1)
    unit = vectors / lengths[:, None]
    pair = np.asarray(graph.edges["pair"])
    n_pairs = int(pair.max()) + 1
    pair_length = np.zeros(n_pairs)
    pair_length[pair] = lengths
    w_f = 4 * epsilon * (-12 * sigma**12 / pair_length**13 + 6 * sigma**6 / pair_length**7)
    forces = direct_forces(w_f, pair, unit, graph.receivers, len(atoms))
    zeros = np.zeros(n_pairs)
    stress = direct_stress(
        zeros,
        zeros,
        pair,
        unit,
        np.zeros(len(pair), int),
        np.array([atoms.get_volume()]),
        1,
        force_weights=w_f,
        lengths=lengths,
    )
    want_forces = atoms.get_forces()
    assert np.abs(want_forces).max() > 1e-2  # the rattle makes real forces
    np.testing.assert_allclose(forces, want_forces, atol=2e-5)
    want_stress = atoms.get_stress(voigt=False) * EV_PER_A3_TO_GPA
    assert np.abs(want_stress).max() > 0.05  # GPa: the strain makes a real stress
    np.testing.assert_allclose(stress[0], want_stress, atol=2e-4)
    with pytest.raises(ValueError, match="both"):
        direct_stress(
            zeros,
            zeros,
            pair,
            unit,
            np.zeros(len(pair), int),
            np.array([atoms.get_volume()]),
            1,
            force_weights=w_f,
        )


def test_angle_and_pair_terms_give_a_three_body_potentials_forces_and_stress(
    strained_silicon, autodiff_reference
):
    """An energy of bond-graph angles and bond lengths, E = Σ_angles φ(cos θ, r_ij, r_ik), on a
    strained, rattled periodic silicon cell: `angle_edge_gradient` with c = ∂φ/∂cos θ plus
    `direct_forces` with the central rest summed per pair equal its forces by autodiff, and
    `angle_stress` of 2c plus the pair virial equal its strain derivative (the reference: jax.grad
    of the energy through `edge_vectors`, which knows nothing of the heads)."""
    import jax.numpy as jnp

    atoms, graph = strained_silicon
    atom_graph = graph.atoms
    ij, ik = np.asarray(graph.bonds.edges["edge_ij"]), np.asarray(graph.bonds.edges["edge_ik"])
    pair = np.asarray(atom_graph.edges["pair"])

    def phi(cos, r_ij, r_ik):  # differs between the orderings (j, k) and (k, j)
        return 0.3 * cos**2 + 0.1 * cos * r_ij - 0.05 * cos / r_ik

    def energy(vectors):
        lengths = jnp.linalg.norm(vectors, axis=1)
        unit = vectors / lengths[:, None]
        return jnp.sum(phi(jnp.sum(unit[ij] * unit[ik], axis=1), lengths[ij], lengths[ik]))

    volume = atoms.get_volume()
    want_forces, want_stress = autodiff_reference(atom_graph, energy, volume)

    vectors = np.asarray(edge_vectors(atom_graph), np.float64)
    lengths = np.linalg.norm(vectors, axis=1)
    unit = vectors / lengths[:, None]
    cos = np.sum(unit[ij] * unit[ik], axis=1)
    grads = [
        np.asarray(jax.vmap(jax.grad(phi, k))(cos, lengths[ij], lengths[ik])) for k in range(3)
    ]
    c = grads[0]
    central = np.zeros(len(lengths))  # ∂φ/∂r along each directed edge, minus c cos θ / r
    np.add.at(central, ij, grads[1] - c * cos / lengths[ij])
    np.add.at(central, ik, grads[2] - c * cos / lengths[ik])
    w_f = np.zeros(int(pair.max()) + 1)
    np.add.at(w_f, pair, central)  # a pair's two directed edges act as one central force

    forces = edge_gradient_forces(
        angle_edge_gradient(c, unit[ij], unit[ik], lengths[ij], lengths[ik], ij, ik, len(lengths)),
        atom_graph.senders,
        atom_graph.receivers,
        len(atoms),
    ) + direct_forces(w_f, pair, unit, atom_graph.receivers, len(atoms))
    zeros, one_graph = np.zeros_like(w_f), np.array([volume])
    stress = (
        angle_stress(2.0 * c, unit[ij], unit[ik], np.zeros(len(c), int), one_graph, 1)
        + direct_stress(
            zeros,
            zeros,
            pair,
            unit,
            np.zeros(len(pair), int),
            one_graph,
            1,
            force_weights=w_f,
            lengths=lengths,
        )
    )[0]
    assert len(c) > 0 and np.abs(want_forces).max() > 0.1 and np.abs(want_stress).max() > 0.5
    np.testing.assert_allclose(forces, want_forces, atol=2e-5)
    np.testing.assert_allclose(stress, want_stress, atol=2e-4)
    np.testing.assert_allclose(np.sum(forces, axis=0), 0.0, atol=1e-5)


def _transformed(atoms, matrix, shift, order):
    out = atoms[order]
    out.set_cell(atoms.cell.array @ matrix.T, scale_atoms=False)
    out.positions = atoms.positions[order] @ matrix.T + shift
    return out


def _randomized(params, seed=0):
    """Params with every leaf perturbed, so the zero-initialised last layers are not zero."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_unflatten(
        tree, [x + 0.2 * rng.normal(size=x.shape).astype(x.dtype) for x in leaves]
    )


@pytest.mark.parametrize("name", list(MODELS))
def test_direct_models_are_equivariant_and_symmetric(name):
    module = MODELS[name]("direct")
    policy = BucketPolicy(fixed_graphs=2, multiple=64)
    structures = _structures()
    cutoff = 4.5
    predict = jax.jit(lambda p, g: predict_padded(module, p, g))
    batch, _ = pad_batch([atoms_to_graph(a, cutoff=cutoff) for a in structures], policy)
    params = _randomized(module.init(jax.random.key(0), batch))
    ref = jax.device_get(predict(params, batch))
    n = [len(a) for a in structures]
    starts = np.cumsum([0, *n])
    for g in range(2):
        forces = ref["forces"][starts[g] : starts[g + 1]]
        assert np.abs(forces).max() > 1e-3  # the heads are live
        np.testing.assert_allclose(forces.sum(0), 0.0, atol=1e-5)  # Newton's third law
        np.testing.assert_allclose(ref["stress"][g], ref["stress"][g].T, atol=1e-5)
    rotation = Rotation.random(random_state=3).as_matrix()
    for matrix in (rotation, -rotation):
        orders = [np.random.default_rng(7 + g).permutation(k) for g, k in enumerate(n)]
        moved = [
            _transformed(a, matrix, np.array([0.3, -1.2, 2.0]), o)
            for a, o in zip(structures, orders)
        ]
        batch2, _ = pad_batch([atoms_to_graph(a, cutoff=cutoff) for a in moved], policy)
        out = jax.device_get(predict(params, batch2))
        np.testing.assert_allclose(out["energy"][:2], ref["energy"][:2], rtol=2e-5, atol=2e-5)
        for g, order in enumerate(orders):
            want = ref["forces"][starts[g] : starts[g + 1]][order] @ matrix.T
            np.testing.assert_allclose(out["forces"][starts[g] : starts[g + 1]], want, atol=1e-4)
        want_s = np.einsum("ij,gjk,lk->gil", matrix, ref["stress"][:2], matrix)
        np.testing.assert_allclose(out["stress"][:2], want_s, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("name", list(MODELS))
def test_direct_model_energy_equals_the_conservative_trunk(name):
    """The direct model is the conservative one plus heads: with the same trunk params its
    energies are identical, and forces/stress come from the heads, not from derivatives."""
    direct, conservative = MODELS[name]("direct"), MODELS[name]("conservative")
    batch, _ = pad_batch(
        [atoms_to_graph(a, cutoff=4.5) for a in _structures()],
        BucketPolicy(fixed_graphs=2, multiple=64),
    )
    params = _randomized(direct.init(jax.random.key(1), batch), seed=1)
    trunk = {
        "params": {
            k: v for k, v in params["params"].items() if k not in direct.config.DIRECT_HEAD_PARAMS
        }
    }
    out_d = jax.jit(lambda p, g: predict_padded(direct, p, g))(params, batch)
    out_c = jax.jit(lambda p, g: predict_padded(conservative, p, g))(trunk, batch)
    np.testing.assert_allclose(out_d["energy"], out_c["energy"], rtol=1e-6, atol=1e-6)
    raw = jax.jit(direct.apply)(params, batch)
    np.testing.assert_allclose(out_d["forces"], raw["forces"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out_d["stress"], raw["stress"], rtol=1e-6, atol=1e-6)
    assert np.abs(np.asarray(out_d["forces"]) - np.asarray(out_c["forces"])).max() > 1e-3


def test_direct_norm_divides_the_pair_weights():
    """``direct_norm`` divides every pair and angle weight: with the same params, forces and
    stress (three-body term included) are the plain sums (norm 1) over the norm, and the energy
    is unchanged. Non-positive, infinite
    or NaN norms raise."""
    batch, _ = pad_batch(
        [atoms_to_graph(a, cutoff=4.5) for a in _structures()],
        BucketPolicy(fixed_graphs=2, multiple=64),
    )
    plain = CHGNet(CHGNetConfig(**TINY_CHGNET, forces="direct", direct_angle_stress=True))
    normed = CHGNet(
        CHGNetConfig(**TINY_CHGNET, forces="direct", direct_angle_stress=True, direct_norm=8.0)
    )
    params = _randomized(plain.init(jax.random.key(2), batch), seed=2)
    out_plain = jax.jit(plain.apply)(params, batch)
    out_normed = jax.jit(normed.apply)(params, batch)
    assert np.abs(np.asarray(out_plain["forces"])).max() > 1e-3
    np.testing.assert_allclose(out_normed["energy"], out_plain["energy"], rtol=1e-6, atol=1e-6)
    for key in ("forces", "stress"):
        np.testing.assert_allclose(
            out_normed[key], np.asarray(out_plain[key]) / 8.0, rtol=1e-5, atol=1e-6
        )
    for bad in (0.0, -2.0, float("inf"), float("nan"), True):
        with pytest.raises(ValueError, match="norm"):
            CHGNetConfig(**TINY_CHGNET, forces="direct", direct_norm=bad)
        with pytest.raises(ValueError, match="norm"):
            EquivariantConfig(forces="direct", direct_norm=bad)


@pytest.mark.parametrize("gradient_forces", [False, True])
def test_direct_trunk_grad_scales_only_the_heads_gradient_into_the_trunk(gradient_forces):
    """``direct_trunk_grad`` leaves every output unchanged and multiplies the gradient that the
    heads' outputs send into the trunk: for a loss of forces and stress only, trunk gradients are
    the unscaled model's times the factor and head gradients are equal; the energy's gradients
    are untouched. Also when the heads run inside the forces' `jax.grad`
    (``gradient_forces``, the ``train.conservative_every`` steps)."""
    batch, _ = pad_batch(
        [atoms_to_graph(a, cutoff=4.5) for a in _structures()],
        BucketPolicy(fixed_graphs=2, multiple=64),
    )
    config = dict(**TINY_CHGNET, forces="direct", direct_angle_stress=True)
    plain = CHGNet(CHGNetConfig(**config))
    scaled = CHGNet(CHGNetConfig(**config, direct_trunk_grad=0.25))
    params = _randomized(plain.init(jax.random.key(3), batch), seed=3)
    rng = np.random.default_rng(3)
    out = jax.jit(plain.apply)(params, batch)
    f_dir, s_dir = rng.normal(size=out["forces"].shape), rng.normal(size=out["stress"].shape)

    def losses(module):
        def heads(p, graph):
            if gradient_forces:  # the heads' outputs from inside the forces' jax.grad
                o = predict_padded(module, p, graph, gradient_forces=True)
                return (o["direct_forces"] * f_dir).sum() + (o["direct_stress"] * s_dir).sum()
            o = module.apply(p, graph)
            return (o["forces"] * f_dir).sum() + (o["stress"] * s_dir).sum()

        def energy(p, graph):
            return module.apply(p, graph)["energy"].sum()

        return jax.jit(jax.grad(heads))(params, batch), jax.jit(jax.grad(energy))(params, batch)

    (heads_plain, energy_plain), (heads_scaled, energy_scaled) = losses(plain), losses(scaled)
    np.testing.assert_allclose(
        jax.jit(scaled.apply)(params, batch)["stress"], out["stress"], rtol=1e-6, atol=1e-6
    )
    for name, grad in heads_plain["params"].items():
        factor = 1.0 if name in CHGNetConfig.DIRECT_HEAD_PARAMS else 0.25
        for a, b in zip(
            jax.tree_util.tree_leaves(heads_scaled["params"][name]), jax.tree_util.tree_leaves(grad)
        ):
            np.testing.assert_allclose(a, factor * np.asarray(b), rtol=2e-4, atol=1e-6)
    for a, b in zip(
        jax.tree_util.tree_leaves(energy_scaled), jax.tree_util.tree_leaves(energy_plain)
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert any(
        np.abs(np.asarray(x)).max() > 1e-4
        for x in jax.tree_util.tree_leaves(heads_plain["params"]["atom_conv_0"])
    )


@pytest.mark.parametrize(
    "three_body",
    [dict(direct_angle_stress=True), dict(direct_angle_forces=True, direct_stress="virial_only")],
)
def test_angle_terms_of_a_batch_equal_each_structure_alone(three_body):
    """With the three-body stress (or force) terms, a padded batch of structures of different
    sizes gives each structure the stress and forces it gets alone (angles reach their own
    graph's atoms and stress, padding angles none), for randomised params."""
    structures = _structures()
    module = CHGNet(CHGNetConfig(**TINY_CHGNET, forces="direct", **three_body))
    policy = BucketPolicy(fixed_graphs=3, multiple=64)
    batch, _ = pad_batch([atoms_to_graph(a, cutoff=4.5) for a in structures], policy)
    params = _randomized(module.init(jax.random.key(5), batch), seed=5)
    apply = jax.jit(module.apply)
    together = jax.device_get(apply(params, batch))
    start = 0
    for g, atoms in enumerate(structures):
        alone, _ = pad_batch([atoms_to_graph(atoms, cutoff=4.5)], policy)
        want = jax.device_get(apply(params, alone))
        assert np.abs(want["stress"][0]).max() > 1e-3
        np.testing.assert_allclose(together["stress"][g], want["stress"][0], rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(
            together["forces"][start : start + len(atoms)],
            want["forces"][: len(atoms)],
            rtol=1e-4,
            atol=1e-4,
        )
        start += len(atoms)
