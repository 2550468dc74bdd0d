"""The memory-lean CHGNet (`equijax.models.chgnet.lean`: messages in pieces, pair features
computed inside the pieces, bond features on the bond graph) against the plain model: the same
energies, forces, stress and magnetic moments in float64 to 1e-10 (one subprocess with
``jax_enable_x64``), for both pretrained presets and for a config that keeps the rematerialised
lean path; and in float32 to rounding."""

from __future__ import annotations

import dataclasses
import os
import pickle
import subprocess
import sys

import ase
import ase.build
import numpy as np
import pytest

from equijax.graphs import BucketPolicy
from equijax.models.chgnet import CHGNetConfig
from equijax.models.chgnet.lean import lean_energy, lean_supported
from equijax.potential import Potential

pytestmark = pytest.mark.usefixtures("fast_compiles")

# pieces of 64 edges/angles: many pieces, and counts that need a padded last piece
CHUNK = 64

X64_SCRIPT = r"""
import jax
jax.config.update("jax_enable_x64", True)
import dataclasses, pickle, sys
import numpy as np
from equijax.graphs import BucketPolicy
from equijax.models.chgnet import CHGNet
from equijax.models.chgnet.pretrained import from_pretrained
from equijax.potential import Potential

with open(sys.argv[1], "rb") as f:
    job = pickle.load(f)
policy = BucketPolicy(growth=2.0, multiple=64, minimum=64)
out = {}
for name in ("0.3.0", "0.2.0", "conv_norm"):
    if name == "conv_norm":  # not lean_supported: the rematerialised blocks in pieces
        module, params = from_pretrained("0.2.0", dtype=np.float64)
        module = CHGNet(dataclasses.replace(module.config, conv_norm="layer"))
        graph = Potential(module, params).graphs(job["structures"][:1])[0]
        params = jax.tree_util.tree_map(
            lambda x: np.asarray(x, np.float64), module.init(jax.random.PRNGKey(3), graph)
        )
    else:
        module, params = from_pretrained(name, dtype=np.float64)
    module = module.clone(config=dataclasses.replace(module.config, lean_chunk=job["chunk"]))
    for lean in (False, True):
        potential = Potential(module, params, policy=policy, lean=lean)
        out[name, lean] = potential.predict(job["structures"], batch_size=2)
with open(sys.argv[2], "wb") as f:
    pickle.dump(out, f)
"""


def _structures() -> list[ase.Atoms]:
    """A rattled Cu-O cell with bonds under 3 Å, and a rattled rock-salt LiF cell."""
    cu = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
    cu.numbers[::3] = 8
    cu.rattle(0.05, seed=0)
    lif = ase.build.bulk("LiF", "rocksalt", a=4.0)
    lif.rattle(0.04, seed=1)
    return [cu, lif]


def _assert_close(got: dict, want: dict, rtol: float, label: str) -> None:
    for key in ("energy", "forces", "stress", "magmoms"):
        a, b = np.asarray(got[key]), np.asarray(want[key])
        scale = max(np.abs(b).max(), 1.0)
        assert np.abs(a - b).max() <= rtol * scale, (label, key, np.abs(a - b).max())


@pytest.fixture(scope="module")
def x64(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lean_x64")
    job, result = folder / "job.pkl", folder / "result.pkl"
    with open(job, "wb") as f:
        pickle.dump({"structures": _structures(), "chunk": CHUNK}, f)
    proc = subprocess.run(
        [sys.executable, "-c", X64_SCRIPT, str(job), str(result)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "JAX_DISABLE_MOST_OPTIMIZATIONS": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    with open(result, "rb") as f:
        return pickle.load(f)


@pytest.mark.parametrize("name", ["0.3.0", "0.2.0", "conv_norm"])
def test_lean_is_the_same_function_in_float64(x64, name):
    for k, (got, want) in enumerate(zip(x64[name, True], x64[name, False])):
        assert got["forces"].dtype == np.float64
        _assert_close(got, want, 1e-10, f"{name} structure {k}")


def test_lean_equals_plain_in_float32_to_rounding(chgnet_potential):
    module = chgnet_potential.module
    module = module.clone(config=dataclasses.replace(module.config, lean_chunk=CHUNK))
    policy = BucketPolicy(growth=2.0, multiple=64, minimum=64)
    lean, plain = (
        Potential(module, chgnet_potential.params, policy=policy, lean=flag)
        for flag in (True, False)
    )
    for got, want in zip(lean.predict(_structures()), plain.predict(_structures())):
        _assert_close(got, want, 2e-5, "float32")


def test_which_configs_run_the_pair_free_path():
    assert lean_supported(CHGNetConfig())
    assert lean_supported(CHGNetConfig(mlp_out_bias=True, gMLP_norm=None))
    for change in (
        dict(conv_norm="layer"),
        dict(forces="direct"),
        dict(direct_pair_energy=4),
        dict(direct_angle_energy=3),
    ):
        config = CHGNetConfig(**change)
        assert not lean_supported(config), change
        with pytest.raises(ValueError, match="rematerialised"):
            lean_energy({}, config, None, None, None)
