"""Pretrained CHGNet: checkpoint conversion against the PyTorch state dict, the orbax cache (loads
without torch, rebuilds when corrupted), unknown versions, and 0.2.0 against the PyTorch 0.2.0."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import ase.build
import jax
import numpy as np
import pytest

from equijax.graphs import BucketPolicy
from equijax.models.chgnet import pretrained as chgnet_pretrained
from equijax.models.chgnet.pretrained import convert_state_dict, from_pretrained
from equijax.potential import Potential

# float32 tolerances against the PyTorch model
TOL_E_PER_ATOM, TOL_F, TOL_S_GPA, TOL_M = 2e-5, 2e-4, 2e-3, 2e-4
COARSE = dict(growth=2.0, multiple=64, minimum=64)


def _flat(params) -> dict[str, np.ndarray]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def _assert_same_params(got, want) -> None:
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for (name, g), w in zip(_flat(got).items(), _flat(want).values()):
        assert g.dtype == w.dtype and g.shape == w.shape, name
        np.testing.assert_array_equal(g, w, err_msg=name)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    """An empty cache folder for this module (never the user's ~/.cache/equijax)."""
    return tmp_path_factory.mktemp("equijax_cache")


@pytest.fixture(scope="module")
def converted(cache_dir):
    """CHGNet 0.3.0 converted from the torch checkpoint into ``$EQUIJAX_CACHE`` (first call)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EQUIJAX_CACHE", str(cache_dir))
        assert not (cache_dir / "chgnet-0.3.0").exists()
        module, params = from_pretrained("0.3.0")
    assert (cache_dir / "chgnet-0.3.0" / "config.json").is_file()
    return module, params


def test_every_checkpoint_tensor_is_converted(converted, torch_chgnet):
    """Each torch tensor maps to exactly one flax param (itself, its transpose, or a squeezed row)."""
    _, params = converted
    state = {k: v.detach().numpy() for k, v in torch_chgnet.state_dict().items()}
    leaves = _flat(params)
    assert len(leaves) == len(state)
    assert sum(v.size for v in leaves.values()) == sum(v.size for v in state.values())
    unused = dict(leaves)
    for key, tensor in state.items():
        forms = [tensor, tensor.T] + (
            [tensor[0]] if tensor.ndim == 2 and tensor.shape[0] == 1 else []
        )
        match = next(
            (
                name
                for name, leaf in unused.items()
                if any(leaf.shape == f.shape and np.array_equal(leaf, f) for f in forms)
            ),
            None,
        )
        assert match is not None, f"torch tensor {key} has no counterpart in the flax params"
        del unused[match]
    assert not unused


def test_named_params_equal_torch_transposes(converted, torch_chgnet):
    """Spot checks: embeddings, frequencies, gated MLPs, norms, output layers, readout and AtomRef."""
    _, params = converted
    p = params["params"]
    sd = {k: v.detach().numpy() for k, v in torch_chgnet.state_dict().items()}

    def linears(prefix):  # torch Linear weights under a Sequential, in order
        mod = torch_chgnet.get_submodule(prefix)
        return [m for m in mod.modules() if m.__class__.__name__ == "Linear"]

    eq = np.testing.assert_array_equal
    eq(p["atom_embedding"], sd["atom_embedding.embedding.weight"])
    eq(p["rbf_ag"]["frequencies"], sd["bond_basis_expansion.rbf_expansion_ag.frequencies"])
    eq(p["rbf_bg"]["frequencies"], sd["bond_basis_expansion.rbf_expansion_bg.frequencies"])
    eq(p["angle_basis"]["frequencies"], sd["angle_basis_expansion.fourier_expansion.frequencies"])
    eq(p["bond_embedding"]["kernel"], sd["bond_embedding.weight"].T)
    eq(p["bond_weights_bg"]["kernel"], sd["bond_weights_bg.weight"].T)
    core = linears("atom_conv_layers.0.twoBody_atom.mlp_core")
    eq(
        p["atom_conv_0"]["gated_mlp"]["core"]["Dense_0"]["kernel"],
        core[0].weight.detach().numpy().T,
    )
    eq(p["atom_conv_0"]["gated_mlp"]["core"]["Dense_1"]["bias"], core[1].bias.detach().numpy())
    eq(p["atom_conv_3"]["mlp_out"]["kernel"], sd["atom_conv_layers.3.mlp_out.layers.1.weight"].T)
    assert "bias" not in p["atom_conv_3"]["mlp_out"]  # 0.3.0: mlp_out_bias=False
    eq(
        p["bond_conv_2"]["gated_mlp"]["norm_gate"]["scale"],
        sd["bond_conv_layers.2.twoBody_bond.bn2.weight"],
    )
    eq(
        p["bond_conv_2"]["gated_mlp"]["norm_core"]["bias"],
        sd["bond_conv_layers.2.twoBody_bond.bn1.bias"],
    )
    gate = linears("angle_layers.1.twoBody_bond.mlp_gate")
    eq(
        p["angle_update_1"]["gated_mlp"]["gate"]["Dense_0"]["kernel"],
        gate[0].weight.detach().numpy().T,
    )
    readout = linears("mlp")
    assert len(readout) == 4
    eq(p["energy_readout"]["mlp"]["Dense_3"]["kernel"], readout[3].weight.detach().numpy().T)
    eq(p["energy_readout"]["mlp"]["Dense_2"]["bias"], readout[2].bias.detach().numpy())
    eq(p["energy_readout"]["readout_norm"]["scale"], sd["readout_norm.weight"])
    eq(p["magmom"]["site_wise"]["kernel"], sd["site_wise.weight"].T)
    eq(p["magmom"]["site_wise"]["bias"], sd["site_wise.bias"])
    eq(p["atomref"]["weights"], sd["composition_model.fc.weight"][0])


def test_convert_rejects_leftover_tensors(torch_chgnet, converted):
    """A state dict with an extra tensor (a config mismatch) raises instead of being half used."""
    module, _ = converted
    state = dict(torch_chgnet.state_dict())
    state["some_extra_layer.weight"] = state["site_wise.weight"]
    with pytest.raises(ValueError):
        convert_state_dict(state, module.config)


def test_float64_params(converted, cache_dir):
    """``dtype=np.float64`` gives the same values as float64 arrays (from the cache)."""
    _, params = converted
    _, params64 = from_pretrained("0.3.0", cache_dir=cache_dir, dtype=np.float64)
    for (name, a), b in zip(_flat(params64).items(), _flat(params).values()):
        assert a.dtype == np.float64, name
        np.testing.assert_array_equal(a, b.astype(np.float64))


SUBPROCESS = textwrap.dedent("""
    import sys

    class BlockTorch:  # any `import torch` (also via chgnet) now raises ImportError
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch.") or name == "chgnet":
                raise ImportError(f"{name} is blocked in this test")

    sys.meta_path.insert(0, BlockTorch())
    import jax
    import ase.build
    import numpy as np
    from equijax.graphs import BucketPolicy
    from equijax.models.chgnet.pretrained import from_pretrained
    from equijax.potential import Potential

    module, params = from_pretrained("0.3.0")
    assert "torch" not in sys.modules and "chgnet" not in sys.modules
    reference = dict(np.load(sys.argv[2]))
    leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    flat = {jax.tree_util.keystr(p): np.asarray(x) for p, x in leaves}
    assert flat.keys() == reference.keys()
    ref_params = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params),
                                              [reference[k] for k in flat])
    pot = Potential(module, params, policy=BucketPolicy(growth=2.0, multiple=64, minimum=64))
    atoms = ase.build.bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.05, seed=1)
    graph = pot.graphs([atoms])
    out = pot.predict_graphs(graph)[0]
    pot.params = ref_params
    out_ref = pot.predict_graphs(graph)[0]
    arrays = {k: np.asarray(v) for k, v in out.items()}
    arrays.update({"ref_" + k: np.asarray(v) for k, v in out_ref.items()})
    arrays.update({"param" + k: v for k, v in flat.items()})
    np.savez(sys.argv[1], **arrays)
""")


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
def test_cached_load_needs_no_torch(converted, cache_dir, tmp_path, torch_chgnet):
    """A second process with torch blocked restores the params from the orbax cache bit for bit
    and predicts exactly as with the freshly converted params (and as PyTorch CHGNet does)."""
    _, params = converted
    reference = tmp_path / "reference.npz"
    np.savez(reference, **_flat(params))
    result = tmp_path / "result.npz"
    script = tmp_path / "load_without_torch.py"
    script.write_text(SUBPROCESS)
    env = dict(os.environ, EQUIJAX_CACHE=str(cache_dir))
    proc = subprocess.run(
        [sys.executable, str(script), str(result), str(reference)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = dict(np.load(result))
    for name, value in _flat(params).items():
        np.testing.assert_array_equal(out["param" + name], value, err_msg=name)
    for key in ("energy", "forces", "stress", "magmoms"):
        np.testing.assert_array_equal(out[key], out["ref_" + key], err_msg=key)
    # and the cached model is CHGNet: compare with the PyTorch model on the same structure
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = ase.build.bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.05, seed=1)
    ref = torch_chgnet.predict_structure(AseAtomsAdaptor.get_structure(atoms), task="efsm")
    assert abs(out["energy"] / len(atoms) - ref["e"]) <= TOL_E_PER_ATOM
    np.testing.assert_allclose(out["forces"], ref["f"], atol=TOL_F, rtol=0)
    np.testing.assert_allclose(out["stress"], ref["s"], atol=TOL_S_GPA, rtol=0)
    np.testing.assert_allclose(out["magmoms"], ref["m"], atol=TOL_M, rtol=0)


def _largest_params_file(folder: Path) -> Path:
    files = [f for f in (folder / "params").rglob("*") if f.is_file()]
    return max(files, key=lambda f: f.stat().st_size)


CORRUPTIONS = {
    "delete_largest_data_file": lambda folder: _largest_params_file(folder).unlink(),
    "delete_orbax_metadata": lambda folder: (folder / "params" / "_METADATA").unlink(),
    "delete_config": lambda folder: (folder / "config.json").unlink(),
    "garble_config": lambda folder: (folder / "config.json").write_text("{not json"),
    "stale_config": lambda folder: (folder / "config.json").write_text(
        json.dumps(
            {
                **json.loads((folder / "config.json").read_text()),
                "config": {
                    **json.loads((folder / "config.json").read_text())["config"],
                    "num_radial": 7,
                },
            }
        )
    ),
}


# orbax may leave an asyncio callback behind after a failed restore; it only warns
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_corrupted_cache_is_rebuilt(converted, cache_dir, tmp_path, monkeypatch, corruption):
    """A damaged or stale cache is rebuilt from the checkpoint (once) with the same params."""
    _, params = converted
    folder = tmp_path / "chgnet-0.3.0"
    shutil.copytree(cache_dir / "chgnet-0.3.0", folder)
    CORRUPTIONS[corruption](folder)
    calls = []
    original = chgnet_pretrained._chgnet_checkpoint
    monkeypatch.setattr(
        chgnet_pretrained,
        "_chgnet_checkpoint",
        lambda version: calls.append(version) or original(version),
    )
    _, rebuilt = from_pretrained("0.3.0", cache_dir=tmp_path)
    assert calls == ["0.3.0"]
    _assert_same_params(rebuilt, params)
    # the rebuilt cache is whole again: the next load reads it without converting
    _, again = from_pretrained("0.3.0", cache_dir=tmp_path)
    assert calls == ["0.3.0"]
    _assert_same_params(again, params)
    assert not (tmp_path / "chgnet-0.3.0.partial").exists()


@pytest.mark.parametrize("version", ["9.9.9", "r2scan", "0.3", ""])
def test_unknown_version_raises(version, tmp_path):
    """Versions other than 0.3.0 and 0.2.0 raise ValueError (before touching any cache)."""
    with pytest.raises(ValueError, match="version"):
        from_pretrained(version, cache_dir=tmp_path)
    with pytest.raises(ValueError):
        Potential.from_pretrained(version)
    assert not any(tmp_path.iterdir())


BENCH_020 = [1, 17, 29]  # ZnS, GaAs and (magnetic) bcc Fe


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
def test_v020_matches_torch(cache_dir, bench_structures):
    """CHGNet 0.2.0 (5 Å cutoff, no norms, output biases) equals the PyTorch 0.2.0 on 3 structures."""
    from chgnet.model import CHGNet
    from pymatgen.io.ase import AseAtomsAdaptor

    module, params = from_pretrained("0.2.0", cache_dir=cache_dir)
    assert module.config.atom_graph_cutoff == 5.0 and module.config.mlp_out_bias
    assert "bias" in params["params"]["atom_conv_0"]["mlp_out"]
    pot = Potential(module, params, policy=BucketPolicy(**COARSE))
    assert (pot.cutoff, pot.bond_cutoff) == (5.0, 3.0)  # from the module's config
    structures = [bench_structures[i] for i in BENCH_020]
    got = pot.predict(structures)
    torch_model = CHGNet.load(model_name="0.2.0", use_device="cpu", verbose=False).eval()
    assert torch_model.graph_converter.atom_graph_cutoff == 5.0
    want = torch_model.predict_structure(
        [AseAtomsAdaptor.get_structure(a) for a in structures], task="efsm", batch_size=3
    )
    for atoms, g, w in zip(structures, got, want):
        assert abs(g["energy_per_atom"] - w["e"]) <= TOL_E_PER_ATOM
        assert g["energy"] == pytest.approx(g["energy_per_atom"] * len(atoms))
        np.testing.assert_allclose(g["forces"], w["f"], atol=TOL_F, rtol=0)
        np.testing.assert_allclose(g["stress"], w["s"], atol=TOL_S_GPA, rtol=0)
        np.testing.assert_allclose(g["magmoms"], w["m"], atol=TOL_M, rtol=0)
    assert max(np.abs(w["m"]).max() for w in want) > 1.0  # Fe is magnetic: magmoms are tested
    assert max(np.abs(w["f"]).max() for w in want) > 0.1
