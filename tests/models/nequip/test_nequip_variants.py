"""NequIP's one-value swaps (tensor product, radial, self-connection, readout, parity): rotation
equivariance of every variant, the path report against the coupling rules, Facet's trim (exact on
a model whose radial is already linear; the collapsed readout equals the two maps), saved-model
folders as pretrained names, and `equijax trim-radial`."""

from __future__ import annotations

import dataclasses

import ase
import ase.build
import ase.io
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from equijax.cli import main
from equijax.graphs import BucketPolicy, atoms_to_graph
from equijax.models import registry
from equijax.models.nequip import NequIP, NequIPConfig
from equijax.models.nequip.model import path_report
from equijax.models.nequip.trim import count, trim_radial
from equijax.models.saved import save_model
from equijax.potential import Potential

SMALL = NequIPConfig(
    chemical_species=("Cu", "O"),
    irreps=("8x0e", "8x0e+4x1e+2x2e", "8x0e+4x1e+2x2e", "8x0e"),
    radial_hidden=(16,),
    conv_denominator=(5.0,),
    edge_chunk=64,
)
POLICY = BucketPolicy(growth=2.0, multiple=64, minimum=64)
VARIANTS = {
    "cg": {},
    "gaunt_grid": {"tp": "gaunt_grid"},
    "gaunt_fourier": {"tp": "gaunt_fourier"},
    "vector_gaunt": {"tp": "vector_gaunt"},
    "linear_radial": {"radial": "linear"},
    "spline_radial": {"radial": "spline"},
    "s2mlp": {"self_connection": "s2mlp"},
    "collapsed_readout": {"readout": "collapsed"},
    "o3_parity": {
        "is_parity": True,
        "irreps": ("8x0e", "8x0e+4x1o+2x2e", "8x0e+4x1o+2x2e+2x1e", "8x0e"),
    },
    "poly_cut_all_edges": {"cutoff_function": "poly_cut", "edge_chunk": None},
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
    module = NequIP(dataclasses.replace(SMALL, **changes))
    params = module.init(jax.random.key(seed), atoms_to_graph(structure(), 5.0, 3.0))
    # a non-trivial per-element scale
    params = jax.tree_util.tree_map(lambda x: np.array(x), params)
    params["params"]["energy_scale"][:] = 1.3
    return module, params


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_is_rotation_equivariant(name):
    module, params = model(VARIANTS[name])
    rotation = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]
    atoms = structure()
    a, b = Potential(module, params, policy=POLICY).predict([atoms, rotated(atoms, rotation)], 2)
    assert np.isfinite(a["energy"]) and np.abs(a["forces"]).max() > 1e-4
    # the sphere-grid MLP is equivariant only up to its grid's resolution
    tol = 2e-2 if name == "s2mlp" else 2e-4
    scale = max(1.0, np.abs(a["forces"]).max())
    assert abs(a["energy"] - b["energy"]) <= tol * max(1.0, abs(a["energy"]))
    np.testing.assert_allclose(a["forces"] @ rotation.T, b["forces"], atol=tol * scale)
    s_scale = max(1.0, np.abs(a["stress"]).max())
    np.testing.assert_allclose(rotation @ a["stress"] @ rotation.T, b["stress"], atol=tol * s_scale)


@pytest.mark.parametrize("kind", ["cg", "gaunt_grid", "gaunt_fourier", "vector_gaunt"])
def test_path_report_follows_the_coupling_rules(kind):
    """CG and the vector Gaunt product realize every coupling; the scalar Gaunt products only
    those with l1 + l2 + l3 even (SO(3) irreps: 1e x 1e -> 1e is a cross product)."""
    report = path_report(dataclasses.replace(SMALL, tp=kind))
    for layer in report:
        for text, realized in layer["paths"]:
            ls = [
                int(part.strip()[-2])
                for part in text.split("x", 1)[1].replace("->", "x").split("x")
            ]
            even = sum(ls) % 2 == 0
            assert realized == (kind in ("cg", "vector_gaunt") or even), (kind, text)
    assert report[1]["total"] == 15


def test_trim_is_exact_for_a_linear_radial():
    """A radial MLP without hidden layers is already linear in the basis: the least-squares
    trim must give back the same model (same predictions)."""
    module, params = model({"radial_hidden": ()})
    atoms = [structure(), rotated(structure(), np.eye(3)[[1, 2, 0]])]
    trimmed, new_params, report = trim_radial(module, params, atoms * 4)
    assert all(layer["r2"] > 1 - 1e-10 for layer in report["layers"])
    assert trimmed.config.radial == "linear"
    want = Potential(module, params, policy=POLICY).predict(atoms, 2)
    got = Potential(trimmed, new_params, policy=POLICY).predict(atoms, 2)
    for g, w in zip(got, want):
        assert abs(g["energy"] - w["energy"]) < 1e-4
        np.testing.assert_allclose(g["forces"], w["forces"], atol=1e-4)


def test_collapsed_readout_equals_the_two_maps():
    module, params = model({})
    atoms = [structure()] * 6
    linear, linear_params, _ = trim_radial(module, params, atoms)
    collapsed, collapsed_params, report = trim_radial(module, params, atoms, collapse_readout=True)
    assert report["params_after"] == count(collapsed_params) < count(linear_params)
    want = Potential(linear, linear_params, policy=POLICY).predict(structure())
    got = Potential(collapsed, collapsed_params, policy=POLICY).predict(structure())
    assert abs(got["energy"] - want["energy"]) < 1e-5 * max(1, abs(want["energy"]))
    np.testing.assert_allclose(got["forces"], want["forces"], atol=1e-5)


def test_saved_model_is_a_pretrained_name_and_trims_from_the_cli(tmp_path, capsys):
    module, params = model({})
    folder = tmp_path / "small"
    save_model(folder, "nequip", module.config, params)
    loaded, loaded_params = registry.load_pretrained(str(folder))
    assert loaded.config == module.config
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(loaded_params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    structures = tmp_path / "s.extxyz"
    ase.io.write(structures, [structure(), rotated(structure(), np.eye(3)[[1, 2, 0]])] * 4)
    out = tmp_path / "trimmed"
    assert (
        main(
            [
                "trim-radial",
                "--model",
                str(folder),
                "--structures",
                str(structures),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "fewer" in capsys.readouterr().out
    trimmed, _ = registry.load_pretrained(str(out))
    assert trimmed.config.radial == "linear"
    with pytest.raises(ValueError, match="unknown pretrained model"):
        registry.load_pretrained(str(tmp_path / "nothing"))


def test_padding_is_inert_and_training_gradients_finite():
    """Padding atoms (number 0) joined by short padding edges send no messages: the parameter
    gradient of a force loss on a padded batch is finite and the real energies equal those of
    the structures alone (a regression: padding features once grew to inf)."""
    from equijax.graphs import pad_batch, padding_masks
    from equijax.potential import predict_padded

    module, params = model({})
    atoms = structure()
    padded, _ = pad_batch([atoms_to_graph(atoms, 5.0, 3.0)], BucketPolicy())
    mask = padding_masks(padded)

    def loss(p):
        out = predict_padded(module, p, padded)
        return jnp.sum(jnp.where(mask["node"][:, None], out["forces"], 0.0) ** 2)

    grads = jax.grad(loss)(params)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree_util.tree_leaves(grads))
    alone = module.apply(params, atoms_to_graph(atoms, 5.0, 3.0))["energy"][0]
    assert abs(float(module.apply(params, padded)["energy"][0]) - float(alone)) < 1e-4
