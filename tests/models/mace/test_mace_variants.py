"""MACE's one-value swaps (symmetric contraction, convolution tensor product): rotation
equivariance of every variant; padding is inert and force-training gradients are finite; config
checks; conversion refuses mace options it lacks and tensors it cannot place."""

from __future__ import annotations

import dataclasses

import ase
import ase.build
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mace_reference import mace_model

from equijax.graphs import BucketPolicy, atoms_to_graph
from equijax.models import registry
from equijax.models.config import ConfigError
from equijax.models.mace import MACE, MACEConfig
from equijax.potential import Potential

SMALL = MACEConfig(
    atomic_numbers=(8, 29),
    hidden_irreps="6x0e+6x1o",
    max_ell=2,
    radial_mlp=(16,),
    r_max=4.5,
    edge_chunk=64,
)
POLICY = BucketPolicy(growth=2.0, multiple=64, minimum=64)
VARIANTS = {
    "cg": {},
    "gaunt_grid_contraction": {"contraction": "gaunt_grid"},
    "gaunt_grid_tp": {"tp": "gaunt_grid"},
    "gaunt_fourier_tp": {"tp": "gaunt_fourier"},
    "vector_gaunt_tp": {"tp": "vector_gaunt"},
    "all_gaunt_grid_plain_first": {
        "contraction": "gaunt_grid",
        "tp": "gaunt_grid",
        "interaction_first": "RealAgnosticInteractionBlock",
        "edge_chunk": None,
    },
}


def structure() -> ase.Atoms:
    atoms = ase.build.bulk("Cu", "fcc", a=3.7, cubic=True)
    atoms.numbers[1] = 8
    atoms.rattle(0.1, seed=7)
    return atoms


def rotated(atoms: ase.Atoms, rotation: np.ndarray) -> ase.Atoms:
    out = atoms.copy()
    out.positions = atoms.positions @ rotation.T
    out.cell = atoms.cell @ rotation.T
    return out


def model(changes: dict, seed: int = 0):
    module = MACE(dataclasses.replace(SMALL, **changes))
    params = jax.jit(module.init)(jax.random.key(seed), atoms_to_graph(structure(), 4.5, 3.0))
    return module, params


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_is_rotation_equivariant(name):
    module, params = model(VARIANTS[name])
    rotation = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]
    atoms = structure()
    a, b = Potential(module, params, policy=POLICY).predict([atoms, rotated(atoms, rotation)], 2)
    assert np.isfinite(a["energy"]) and np.abs(a["forces"]).max() > 1e-4
    tol = 2e-4
    scale = max(1.0, np.abs(a["forces"]).max())
    assert abs(a["energy"] - b["energy"]) <= tol * max(1.0, abs(a["energy"]))
    np.testing.assert_allclose(a["forces"] @ rotation.T, b["forces"], atol=tol * scale)
    s_scale = max(1.0, np.abs(a["stress"]).max())
    np.testing.assert_allclose(rotation @ a["stress"] @ rotation.T, b["stress"], atol=tol * s_scale)


def test_padding_is_inert_and_training_gradients_finite():
    """Padding atoms (number 0) send no messages and get no site energy: a force loss's
    parameter gradient on a padded batch is finite and the real energy equals the unpadded."""
    from equijax.graphs import pad_batch, padding_masks
    from equijax.potential import predict_padded

    module, params = model({})
    atoms = structure()
    padded, _ = pad_batch([atoms_to_graph(atoms, 4.5, 3.0)], POLICY)
    mask = padding_masks(padded)

    def loss(p, graph):
        out = predict_padded(module, p, graph)
        return jnp.sum(jnp.where(mask["node"][:, None], out["forces"], 0.0) ** 2)

    grads = jax.jit(jax.grad(loss))(params, padded)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree_util.tree_leaves(grads))
    energy = jax.jit(lambda p, graph: module.apply(p, graph)["energy"][0])
    alone = energy(params, atoms_to_graph(atoms, 4.5, 3.0))
    assert abs(float(energy(params, padded)) - float(alone)) < 1e-4


def test_registry_builds_mace_and_checks_keys():
    module = registry.build("mace", {"atomic_numbers": [1, 8], "hidden_irreps": "4x0e"})
    assert isinstance(module, MACE) and module.config.num_features == 4
    with pytest.raises(ConfigError, match="same number of channels"):
        registry.build("mace", {"hidden_irreps": "8x0e+4x1o"})
    with pytest.raises(ConfigError, match="correlation"):
        registry.build("mace", {"correlation": [3, 2, 1], "num_interactions": 2})
    with pytest.raises(ConfigError, match="contraction"):
        registry.build("mace", {"contraction": "gaunt"})
    with pytest.raises(ValueError, match="elements Fe"):
        module.config.check_numbers([1, 26])


def test_unsupported_mace_options_and_unmapped_tensors_raise():
    from equijax.models.mace.convert import config_from_torch, convert_state_dict

    torch_model = mace_model(max_ell=1, correlation=2, num_interactions=1, hidden_irreps="4x0e")
    torch_model.heads = ["a", "b"]
    with pytest.raises(ConfigError, match="heads"):
        config_from_torch(torch_model)
    torch_model.heads = ["Default"]
    config = config_from_torch(torch_model)
    torch_model.register_buffer("extra_weight", __import__("torch").ones(3))
    with pytest.raises(ValueError, match="extra_weight"):
        convert_state_dict(torch_model, config)


@pytest.mark.parametrize("contraction", ["cg", "gaunt_grid"])
def test_path_report_counts_the_initialised_weights(contraction):
    """`paths` counts what `init` creates: the contraction weights of each product layer, and
    `num_weights` the whole model's."""
    from equijax.models.mace.report import num_weights, paths

    module, params = model({"contraction": contraction})
    report = paths(module.config)
    for row in report:
        product = params["params"][f"product_{row['layer']}"]
        counted = sum(v.size for k, v in product.items() if "weights" in k)
        assert counted == row["contraction_weights"]
        if contraction == "cg":
            assert row["realized"] == row["couplings"]
        else:
            assert row["realized"] < row["couplings"]
    leaves = jax.tree_util.tree_leaves(
        {k: v for k, v in params["params"].items() if k != "atomref"}
    )
    assert num_weights(module.config) == sum(leaf.size for leaf in leaves)


def test_convert_mace_cli_writes_a_model_folder(tmp_path, capsys):
    """`equijax convert-mace FILE --out DIR`: the folder loads as a pretrained name and predicts
    mace-torch's energy; a missing file is one line and exit status 2."""
    import torch
    from mace_reference import mace_predict

    from equijax.cli import main

    torch_model = mace_model(max_ell=1, correlation=2, num_interactions=1, hidden_irreps="4x0e")
    path = tmp_path / "small.model"
    torch.save(torch_model, path)
    assert main(["convert-mace", str(path), "--out", str(tmp_path / "eq")]) == 0
    atoms = structure()
    want = mace_predict(torch_model, [atoms])[0]
    got = Potential(*registry.load_pretrained(str(tmp_path / "eq")), policy=POLICY).predict(atoms)
    assert abs(got["energy"] - want["energy"]) < 2e-5 * len(atoms)
    with pytest.raises(SystemExit) as err:
        main(["convert-mace", str(tmp_path / "missing.model"), "--out", str(tmp_path / "x")])
    assert err.value.code == 2 or "no such file" in str(err.value.code)
