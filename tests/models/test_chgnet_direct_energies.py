"""CHGNet's learned pair and three-body energies (direct heads): their forces and stress are
the exact gradients of the energy they add, against autodiff of the model's own energy."""

import ase.build
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from equijax.graphs import BucketPolicy, atoms_to_graph, pad_batch
from equijax.models.chgnet import CHGNet, CHGNetConfig
from equijax.potential import predict_padded

pytestmark = pytest.mark.usefixtures("fast_compiles")


TINY = dict(
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


@pytest.mark.parametrize("direct_stress", ["independent", "virial_only"])
@pytest.mark.parametrize(
    "option, mlp",
    [("direct_pair_energy", "pair_energy_mlp"), ("direct_angle_energy", "angle_energy_mlp")],
)
def test_learned_energy_forces_are_its_energy_gradient(option, mlp, direct_stress):
    """In CHGNet with a learned pair or three-body energy: make its coefficients constants (the
    MLP's last layer: zero kernel, random bias) and the other heads silent (zero-initialised).
    Then the direct forces are exactly the energy's gradient minus the trunk's (autodiff of the
    model's own energy, `predict_padded(gradient_forces=True)`), and with ``virial_only`` so is
    the stress; the energy changes by the added energy."""
    structures = [
        ase.build.bulk("Cu", "fcc", 3.6, cubic=True),
        ase.build.bulk("NaCl", "rocksalt", 5.6),
    ]
    for k, atoms in enumerate(structures):
        atoms.rattle(0.1, seed=k)
    batch, _ = pad_batch(
        [atoms_to_graph(a, cutoff=4.5) for a in structures],
        BucketPolicy(fixed_graphs=3, multiple=64),
    )
    module = CHGNet(
        CHGNetConfig(**TINY, forces="direct", **{option: 4}, direct_stress=direct_stress)
    )
    params = module.init(jax.random.key(0), batch)
    last = params["params"][mlp]["Dense_1"]
    with_pair = jax.tree_util.tree_map(lambda x: x, params)
    with_pair["params"][mlp]["Dense_1"] = {
        "kernel": jnp.zeros_like(last["kernel"]),
        "bias": jnp.asarray([0.3, -0.2, 0.1, 0.05], jnp.float32),
    }

    def run(p, gradient_forces):
        return jax.device_get(
            jax.jit(lambda p, g: predict_padded(module, p, g, gradient_forces=gradient_forces))(
                p, batch
            )
        )

    direct, grads = run(with_pair, False), run(with_pair, True)
    trunk = run(params, True)  # zero pair energy: the trunk's own gradients
    n = sum(len(a) for a in structures)
    pair_forces = grads["forces"][:n] - trunk["forces"][:n]
    assert np.abs(pair_forces).max() > 1e-2
    np.testing.assert_allclose(direct["forces"][:n], pair_forces, atol=2e-4)
    if direct_stress == "virial_only":
        np.testing.assert_allclose(
            direct["stress"][:2], grads["stress"][:2] - trunk["stress"][:2], atol=2e-3
        )
    else:  # the independent heads (zero-initialised) and no virial
        np.testing.assert_allclose(direct["stress"][:2], 0.0, atol=1e-6)
    assert np.all(np.abs(direct["energy"][:2] - trunk["energy"][:2]) > 1e-3)


def test_a_conservative_model_keeps_the_learned_energies():
    """The learned pair and three-body energies are energy terms: a conservative CHGNet with the
    same options and params (direct heads dropped) has the direct model's energies, and its
    forces are the gradient of all of it (checked against central finite differences of its own
    energy along a random displacement)."""
    atoms = ase.build.bulk("Si", "diamond", 5.43, cubic=True)
    atoms.rattle(0.1, seed=0)
    policy = BucketPolicy(fixed_graphs=2, multiple=64)
    batch, _ = pad_batch([atoms_to_graph(atoms, cutoff=4.5)], policy)
    options = dict(**TINY, direct_pair_energy=3, direct_angle_energy=3)
    direct = CHGNet(CHGNetConfig(**options, forces="direct"))
    conservative = CHGNet(CHGNetConfig(**options))
    params = direct.init(jax.random.key(1), batch)
    params = jax.tree_util.tree_map(lambda x: x + 0.05, params)  # live energy MLPs
    kept = {"params": {k: v for k, v in params["params"].items() if k not in ("direct_heads",)}}
    energy_d = jax.jit(direct.apply)(params, batch)["energy"][0]
    energy_c = jax.jit(conservative.apply)(kept, batch)["energy"][0]
    plain = CHGNet(CHGNetConfig(**TINY))
    energy_trunk = jax.jit(plain.apply)(
        {
            "params": {
                k: v
                for k, v in kept["params"].items()
                if k not in ("pair_energy_mlp", "angle_energy_mlp")
            }
        },
        batch,
    )["energy"][0]
    np.testing.assert_allclose(energy_c, energy_d, rtol=1e-6, atol=1e-6)
    assert abs(float(energy_c - energy_trunk)) > 1e-3  # the learned terms are live

    forces = jax.device_get(jax.jit(lambda p, g: predict_padded(conservative, p, g))(kept, batch))[
        "forces"
    ][: len(atoms)]
    step = np.random.default_rng(2).normal(size=(len(atoms), 3)) * 1e-3

    def energy_at(shift):
        moved = atoms.copy()
        moved.positions = atoms.positions + shift
        graph, _ = pad_batch([atoms_to_graph(moved, cutoff=4.5)], policy)
        return float(jax.jit(conservative.apply)(kept, graph)["energy"][0])

    slope = (energy_at(step) - energy_at(-step)) / 2.0
    np.testing.assert_allclose(-np.sum(forces * step), slope, rtol=0.05, atol=2e-5)


@pytest.mark.parametrize("bad", [-1, 2.5, True])
def test_learned_energy_sizes_must_be_counts(bad):
    """A negative, fractional or boolean number of basis functions is refused by name."""
    for name in ("direct_pair_energy", "direct_angle_energy"):
        with pytest.raises(ValueError, match=f"{name}.*must be an integer >= 0"):
            CHGNetConfig(**TINY, **{name: bad})


def test_the_conservative_copy_keeps_the_learned_energies_shape():
    """`as_conservative` (``load_trained(forces="conservative")``) resets only the heads'
    options: the learned energies' MLP widths (``direct_hidden_dims``) stay, so the direct
    model's trunk and energy params fit the conservative model exactly, and their energies agree."""
    direct = CHGNet(
        CHGNetConfig(
            **{**TINY, "direct_hidden_dims": (12, 6)},
            forces="direct",
            direct_pair_energy=4,
            direct_norm=20.0,
            direct_stress="virial",
        )
    )
    conservative = CHGNet(direct.config.as_conservative())
    assert conservative.config.direct_hidden_dims == (12, 6)
    assert (conservative.config.direct_norm, conservative.config.direct_stress) == (
        1.0,
        "independent",
    )
    atoms = ase.build.bulk("Cu", "fcc", 3.6, cubic=True)
    atoms.rattle(0.05, seed=0)
    batch, _ = pad_batch([atoms_to_graph(atoms, cutoff=4.5)], BucketPolicy(fixed_graphs=1))
    params = direct.init(jax.random.key(0), batch)
    trunk = {
        "params": {
            k: v for k, v in params["params"].items() if k not in CHGNetConfig.DIRECT_HEAD_PARAMS
        }
    }
    fresh = conservative.init(jax.random.key(1), batch)
    shapes = jax.tree_util.tree_map(jnp.shape, trunk)
    assert shapes == jax.tree_util.tree_map(jnp.shape, fresh)
    np.testing.assert_allclose(
        conservative.apply(trunk, batch)["energy"], direct.apply(params, batch)["energy"], rtol=1e-6
    )
