"""The model registry: a model defined and registered in this file trains through the same code
path as ``equijax train model.name=...``, loads back, and predicts through `Potential`; model
configs check their keys in one place."""

from __future__ import annotations

import dataclasses
import json
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.build import bulk
from ase.neighborlist import neighbor_list

from equijax import cli
from equijax.graphs import edge_vectors, graph_index
from equijax.models import registry
from equijax.models.config import BaseModelConfig, ConfigError, Forces, field_choices
from equijax.models.equivariant import EquivariantConfig
from equijax.nn.tp import KINDS
from equijax.nn.tp.module import BASELINE_KIND
from equijax.potential import Potential
from equijax.training.config import load_config
from equijax.training.run_dir import run_config
from equijax.training.trained import load_trained


@dataclasses.dataclass(frozen=True)
class PairConfig(BaseModelConfig):
    """A pair potential E = Σ_{i<j} a_{Zi} a_{Zj} exp(-r_ij / decay) (cut off smoothly)."""

    atom_graph_cutoff: float = 4.0
    decay: float = 1.0
    shape: Literal["exp", "gauss"] = "exp"
    forces: Forces = "conservative"


class PairModel(nn.Module):
    """The registry's test model: one learned amplitude per element and one learned decay."""

    config: PairConfig = PairConfig()

    @nn.compact
    def __call__(self, graph, positions=None, cell=None):
        atoms = graph.atoms
        positions = atoms.nodes["positions"] if positions is None else positions
        cell = atoms.globals["cell"] if cell is None else cell
        amplitude = self.param("amplitude", nn.initializers.constant(0.3), (94,))
        log_decay = self.param("log_decay", nn.initializers.constant(np.log(self.config.decay)), ())
        r = jnp.linalg.norm(edge_vectors(atoms, jnp, positions, cell), axis=-1)
        a = jnp.take(amplitude, atoms.nodes["numbers"] - 1, mode="clip")
        x = r / jnp.exp(log_decay)
        shape = jnp.exp(-x) if self.config.shape == "exp" else jnp.exp(-x * x)
        envelope = jnp.where(
            r < self.config.atom_graph_cutoff,
            jnp.cos(0.5 * jnp.pi * r / self.config.atom_graph_cutoff) ** 2,
            0.0,
        )
        pair = 0.5 * a[atoms.senders] * a[atoms.receivers] * shape * envelope  # half per direction
        n_atoms = positions.shape[0]
        sites = jax.ops.segment_sum(pair, atoms.receivers, n_atoms)
        energy = jax.ops.segment_sum(
            sites, graph_index(atoms.n_node, n_atoms), atoms.n_node.shape[0]
        )
        zeros = jnp.zeros(n_atoms, sites.dtype)
        return {"energy": energy, "site_energies": sites, "atomref": zeros, "magmoms": zeros}


@pytest.fixture
def pair_model():
    registry.register(registry.ModelEntry("pair", PairConfig, PairModel))
    yield
    registry.unregister("pair")


def _numpy_energy(atoms, amplitude: np.ndarray, decay: float, cutoff: float) -> float:
    """The pair energy by a plain double loop over ase's neighbour list (the reference)."""
    i, j, d = neighbor_list("ijd", atoms, cutoff)
    a = amplitude[atoms.numbers - 1]
    envelope = np.cos(0.5 * np.pi * d / cutoff) ** 2
    return float(np.sum(0.5 * a[i] * a[j] * np.exp(-d / decay) * envelope))


def test_a_registered_model_trains_through_equijax_train(pair_model, tmp_path, capsys):
    """``equijax train`` with ``model.name=pair`` (a model this test registered) trains 2 steps,
    writes its run, and the run loads back into a `Potential` whose energies equal the numpy
    reference with the trained params."""
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as stop:  # the CLI's user-error exit: one line, no traceback
        cli.main(
            ["train", "--config", "chgnet_emt_small", "model.name=pair", f"train.run_dir={run_dir}"]
        )
    assert stop.value.code == 2 and "not a key of model 'pair'" in capsys.readouterr().err
    yaml = tmp_path / "pair.yaml"
    yaml.write_text(
        "defaults:\n  - data: emt_tiny\n  - train: smoke\n  - _self_\n"
        "model:\n  name: pair\n  decay: 1.5\n  atom_graph_cutoff: 4.0\n"
    )
    assert (
        cli.main(
            [
                "train",
                "--config",
                str(yaml),
                "train.max_steps=2",
                f"train.run_dir={run_dir}",
                "loss.magmoms=0",
                "optim.ema_decay=0",
            ]
        )
        == 0
    )
    result = json.loads((run_dir / "result.json").read_text())
    assert result["steps"] == 2 and np.isfinite(result["test"]["loss"])
    saved = json.loads((run_dir / "config.json").read_text())["model"]
    assert saved["name"] == "pair" and saved["decay"] == 1.5

    module, params = load_trained(run_dir, which="latest")
    assert isinstance(module, PairModel) and module.config == PairConfig(decay=1.5)
    amplitude = np.asarray(params["params"]["amplitude"])
    assert not np.allclose(amplitude, 0.3)  # trained
    decay = float(np.exp(params["params"]["log_decay"]))
    atoms = bulk("Cu", "fcc", 3.6, cubic=True)
    atoms.rattle(0.05, seed=0)
    potential = Potential(module, params)
    np.testing.assert_allclose(
        potential.predict(atoms)["energy"], _numpy_energy(atoms, amplitude, decay, 4.0), rtol=1e-5
    )


def test_registry_names_builds_and_refuses(pair_model):
    assert {"chgnet", "equivariant", "pair"} <= set(registry.available())
    assert {"chgnet-0.3.0", "chgnet-0.2.0"} <= set(registry.available_pretrained())
    assert registry.pretrained("0.3.0") is registry.pretrained("chgnet-0.3.0")
    assert registry.config_class("pair") is PairConfig
    module = registry.build("pair", {"decay": 2})
    assert module.config.decay == 2.0 and isinstance(module.config.decay, float)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.ModelEntry("pair", PairConfig, PairModel))
    with pytest.raises(ConfigError, match="model.name.*unknown model 'nope'.*pair"):
        registry.build("nope", {})
    with pytest.raises(ConfigError, match=r"'model.width': not a key of model 'pair'.*decay"):
        registry.build("pair", {"width": 3})
    with pytest.raises(ConfigError, match=r"'model.shape': expected one of 'exp', 'gauss'"):
        registry.build("pair", {"shape": "cube"})
    with pytest.raises(ConfigError, match=r"'model.shape': must be one of"):
        PairConfig(shape="cube")  # the same check for configs built in Python
    with pytest.raises(ConfigError, match=r"'model.decay': expected float, got 'x'"):
        registry.build("pair", {"decay": "x"})
    with pytest.raises(ValueError, match="unknown pretrained model 'pair-1'"):
        registry.load_pretrained("pair-1")
    with pytest.raises(TypeError, match="BaseModelConfig"):
        registry.register(registry.ModelEntry("bad", dict, PairModel))


def test_model_section_errors_name_the_key(pair_model):
    with pytest.raises(
        ConfigError,
        match=r"'model.n_conv': not a key of model 'pair'; its keys "
        r"are: name, pretrained, init_from, refit_atomref",
    ):
        load_config(None, ["model.name=pair", "model.n_conv=2"])
    with pytest.raises(ConfigError, match=r"'model.pretrained'.*chgnet model.*'pair'"):
        load_config(None, ["model.name=pair", "model.pretrained=chgnet-0.3.0"])
    config = load_config(None, ["model.name=chgnet", "model.pretrained=0.2.0"])
    assert config.model.config == registry.pretrained("chgnet-0.2.0").config


def test_literal_choices_match_the_tensor_product_kinds():
    """The equivariant config's ``tp`` choices are exactly the tensor products that exist."""
    assert set(field_choices(EquivariantConfig, "tp")) == {*KINDS, BASELINE_KIND}


def test_legacy_flat_run_sections_still_load(tmp_path):
    """A run directory written before models had their own configs (one flat section holding
    every model's fields) loads as its model, aliases (spline_basis) included."""
    flat = {
        "name": "equivariant",
        "atom_fea_dim": 64,
        "hidden_dim": 64,
        "num_radial": 31,
        "mlp_hidden_dims": [64],
        "bond_graph_cutoff": 3.0,
        "channels": 8,
        "lmax": 1,
        "spline_basis": 6,
        "atom_graph_cutoff": 4.5,
        "tp": "cg",
        "forces": "conservative",
        "remat": False,
        "pretrained": None,
        "init_from": None,
        "refit_atomref": False,
    }
    (tmp_path / "config.json").write_text(json.dumps({"model": flat}))
    config = run_config(tmp_path).model.config
    assert config == EquivariantConfig(channels=8, lmax=1, num_radial=6, cutoff=4.5, tp="cg")
    # a user config is not upgraded: a CHGNet key under the equivariant model is an error
    with pytest.raises(ConfigError, match="'model.atom_fea_dim': not a key of model"):
        load_config(None, ["model.name=equivariant", "model.atom_fea_dim=8"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.name=3"], "'model.name': must be a string"),
        (["model.refit_atomref=3"], "'model.refit_atomref': must be true or false"),
        (["model.init_from=3"], "'model.init_from': must be a string or null"),
        (["model.pretrained=chgnet-9"], "'model.pretrained': unknown pretrained model"),
        (["model.direct_stress=virial"], "'model.direct_stress': needs model.forces=direct"),
        (["model.name=equivariant", "model.direct_norm=4"], "'model.direct_norm': needs model"),
    ],
)
def test_bad_model_sections_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)
