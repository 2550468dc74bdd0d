"""NequIP against sevenn models with random weights: O(3) and SO(3)-only irreps, automatic and
manual irreps, lmax 1-3, 1-3 layers, both envelopes (float32, energy, forces and stress)."""

from __future__ import annotations

import ase
import ase.build
import numpy as np
import pytest
from sevenn_reference import sevenn_predict

from equijax.graphs import BucketPolicy
from equijax.models.nequip.convert import from_sevenn_model
from equijax.potential import Potential

CONFIGS = {
    "o3-l2-auto-xplor": dict(
        is_parity=True,
        lmax=2,
        num_convolution_layer=3,
        channel=8,
        cutoff_function={"cutoff_function_name": "XPLOR", "cutoff_on": 3.5},
    ),
    "so3-l3-manual-poly": dict(
        is_parity=False,
        lmax=3,
        num_convolution_layer=2,
        irreps_manual=["12x0e", "12x0e+6x1e+4x2e+2x3e", "8x0e"],
        cutoff_function={"cutoff_function_name": "poly_cut", "poly_cut_p_value": 5},
        weight_nn_hidden_neurons=[16],
    ),
    "o3-l1-one-layer": dict(
        is_parity=True,
        lmax=1,
        num_convolution_layer=1,
        channel=6,
        cutoff_function={"cutoff_function_name": "poly_cut"},
    ),
}


def sevenn_model(values: dict, seed: int = 0):
    """A sevenn model with every trainable weight drawn N(0, 1), and its config."""
    import sevenn._const as const
    import sevenn._keys as KEY
    import torch
    from sevenn.model_build import build_E3_equivariant_model
    from sevenn.util import chemical_species_preprocess

    torch.manual_seed(seed)
    config = dict(const.DEFAULT_E3_EQUIVARIANT_MODEL_CONFIG)
    config.update(chemical_species_preprocess(["Cu", "O", "H"]))
    config.update(
        {
            KEY.CUTOFF: 4.0,
            KEY.SELF_CONNECTION_TYPE: "linear",
            KEY.CONV_DENOMINATOR: 7.5,
            KEY.SHIFT: [-1.0, -2.0, -3.0],
            KEY.SCALE: [1.1, 0.9, 1.3],
            KEY.RADIAL_BASIS: {KEY.RADIAL_BASIS_NAME: "bessel", "bessel_basis_num": 6},
        }
    )
    config.update(values)
    model = build_E3_equivariant_model(config)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_()
    return model.eval(), config


def structures() -> list[ase.Atoms]:
    crystal = ase.build.bulk("Cu", "fcc", a=3.6, cubic=True)
    crystal.numbers[1], crystal.numbers[2] = 8, 1
    crystal.rattle(0.1, seed=3)
    skewed = ase.Atoms(
        "CuO",
        scaled_positions=[[0, 0, 0], [0.45, 0.5, 0.55]],
        cell=[[2.7, 0, 0], [0.9, 2.6, 0], [0.4, 0.8, 2.9]],
        pbc=True,
    )
    water = ase.build.molecule("H2O")
    return [crystal, skewed, water]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_sevenn_with_random_weights(name):
    model, config = sevenn_model(CONFIGS[name])
    atoms = structures()
    want = sevenn_predict(model, atoms, config["cutoff"])
    module, params = from_sevenn_model(model, config)
    policy = BucketPolicy(growth=2.0, multiple=32, minimum=32)
    got = Potential(module, params, policy=policy).predict(atoms, batch_size=len(atoms))
    for a, g, w in zip(atoms, got, want):
        scale = max(1.0, abs(w["energy"]))
        assert abs(g["energy"] - w["energy"]) <= 2e-6 * scale * len(a), (name, a)
        f_scale = max(1.0, np.abs(w["forces"]).max())
        np.testing.assert_allclose(g["forces"], w["forces"], atol=2e-5 * f_scale, rtol=0)
        if a.pbc.all():
            s_scale = max(1.0, np.abs(w["stress"]).max())
            np.testing.assert_allclose(g["stress"], w["stress"], atol=2e-5 * s_scale, rtol=0)


def test_unsupported_sevenn_options_raise():
    """A sevenn config this port lacks (the one-hot tensor-product self-connection) is refused
    by name rather than converted wrongly."""
    from equijax.models.config import ConfigError
    from equijax.models.nequip.convert import config_from_sevenn

    _, config = sevenn_model({**CONFIGS["o3-l1-one-layer"]})
    with pytest.raises(ConfigError, match="self_connection_type"):
        config_from_sevenn({**config, "self_connection_type": "nequip"})
