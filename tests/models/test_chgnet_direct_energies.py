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


TINY = dict(atom_fea_dim=8, bond_fea_dim=8, angle_fea_dim=8, num_radial=5, num_angular=5,
            n_conv=2, atom_conv_hidden_dim=(8,), bond_conv_hidden_dim=(8,), mlp_hidden_dims=(8,),
            direct_hidden_dims=(8,), atom_graph_cutoff=4.5)


@pytest.mark.parametrize("direct_stress", ["independent", "virial_only"])
@pytest.mark.parametrize("option, mlp", [("direct_pair_energy", "pair_energy_mlp"),
                                         ("direct_angle_energy", "angle_energy_mlp")])
def test_learned_energy_forces_are_its_energy_gradient(option, mlp, direct_stress):
    """In CHGNet with a learned pair or three-body energy: make its coefficients constants (the
    MLP's last layer: zero kernel, random bias) and the other heads silent (zero-initialised).
    Then the direct forces are exactly the energy's gradient minus the trunk's (autodiff of the
    model's own energy, `predict_padded(gradient_forces=True)`), and with ``virial_only`` so is
    the stress; the energy changes by the added energy."""
    structures = [ase.build.bulk("Cu", "fcc", 3.6, cubic=True), ase.build.bulk("NaCl", "rocksalt", 5.6)]
    for k, atoms in enumerate(structures):
        atoms.rattle(0.1, seed=k)
    batch, _ = pad_batch([atoms_to_graph(a, cutoff=4.5) for a in structures],
                         BucketPolicy(fixed_graphs=3, multiple=64))
    module = CHGNet(CHGNetConfig(**TINY, forces="direct", **{option: 4},
                                 direct_stress=direct_stress))
    params = module.init(jax.random.key(0), batch)
    last = params["params"][mlp]["Dense_1"]
    with_pair = jax.tree_util.tree_map(lambda x: x, params)
    with_pair["params"][mlp]["Dense_1"] = {
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
