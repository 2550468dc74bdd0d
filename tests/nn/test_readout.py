"""`SiteEnergies`, `SiteMagmoms` and `AtomRef` against the PyTorch CHGNet readout pieces."""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from chgnet.model.composition_model import AtomRef as TorchAtomRef
from chgnet.model.functions import MLP as TorchMLP

from equijax.nn.readout import MAX_ELEMENTS, AtomRef, SiteEnergies, SiteMagmoms

RTOL, ATOL = 1e-5, 1e-5  # float32


def _np(t: torch.Tensor) -> jnp.ndarray:
    return jnp.asarray(t.detach().numpy())


def _mlp_params(mlp: TorchMLP) -> dict:
    linears = [m for m in mlp.layers if isinstance(m, torch.nn.Linear)]
    return {
        f"Dense_{k}": {"kernel": _np(lin.weight).T, "bias": _np(lin.bias)}
        for k, lin in enumerate(linears)
    }


def _atom_feas(seed: int, n: int = 23, dim: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


@pytest.mark.parametrize("hidden,norm", [((64, 64, 64), "layer"), ((64, 64), None)])
def test_site_energies_match_torch_readout(hidden, norm):
    """`SiteEnergies` equals chgnet's readout ``mlp(readout_norm(x))`` (0.3.0 and 0.2.0 layouts)."""
    torch.manual_seed(0)
    mlp = TorchMLP(64, hidden_dim=list(hidden), output_dim=1, activation="silu").eval()
    layer_norm = torch.nn.LayerNorm(64)
    with torch.no_grad():
        layer_norm.weight.copy_(1 + 0.3 * torch.randn(64))
        layer_norm.bias.copy_(0.3 * torch.randn(64))
    x = 3.0 * _atom_feas(1) + 0.5
    with torch.no_grad():
        h = torch.tensor(x)
        want = mlp(layer_norm(h) if norm else h).view(-1).numpy()
    params = {"mlp": _mlp_params(mlp)}
    if norm:
        params["readout_norm"] = {"scale": _np(layer_norm.weight), "bias": _np(layer_norm.bias)}
    module = SiteEnergies(hidden, "silu", norm)
    init = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)["params"]
    assert jax.tree_util.tree_structure(init) == jax.tree_util.tree_structure(params)
    got = np.asarray(jax.jit(module.apply)({"params": params}, x))
    assert got.shape == want.shape == (23,)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_site_magmoms_match_abs_linear():
    """`SiteMagmoms` equals chgnet's ``|site_wise(x)|`` (a Linear(64, 1) with bias) and is >= 0."""
    torch.manual_seed(1)
    linear = torch.nn.Linear(64, 1)
    x = _atom_feas(2)
    with torch.no_grad():
        want = torch.abs(linear(torch.tensor(x))).view(-1).numpy()
    params = {"site_wise": {"kernel": _np(linear.weight).T, "bias": _np(linear.bias)}}
    got = np.asarray(SiteMagmoms().apply({"params": params}, x))
    assert got.shape == (23,)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    assert np.all(got >= 0) and np.any(want > 0.1)


def test_readout_permutation_of_atoms():
    """Permuting atoms permutes per-atom energies and magnetic moments identically."""
    x = _atom_feas(3)
    perm = np.random.default_rng(4).permutation(len(x))
    for module in (SiteEnergies(), SiteMagmoms()):
        params = jax.jit(module.init)(jax.random.PRNGKey(5), x)
        apply = jax.jit(module.apply)
        np.testing.assert_allclose(
            apply(params, x[perm]), np.asarray(apply(params, x))[perm], rtol=1e-6, atol=1e-6
        )


@pytest.fixture(scope="module")
def torch_atomref() -> TorchAtomRef:
    """chgnet's AtomRef with its MPtrj fit (as used by the pretrained models)."""
    ref = TorchAtomRef(is_intensive=True)
    ref.initialize_from("MPtrj")
    return ref.eval()


def test_atomref_matches_torch_mptrj(torch_atomref):
    """Mean of the per-atom `AtomRef` equals chgnet's intensive AtomRef energy per structure."""
    weights = _np(torch_atomref.fc.weight)[0]
    assert weights.shape == (MAX_ELEMENTS,)
    module = AtomRef()
    params = {"params": {"weights": weights}}
    rng = np.random.default_rng(6)
    compositions = [
        np.array([1]),
        np.array([94]),
        np.array([8, 8, 26, 26, 26, 3]),
        np.arange(1, MAX_ELEMENTS + 1),
    ]
    compositions += [rng.integers(1, MAX_ELEMENTS + 1, rng.integers(1, 40)) for _ in range(12)]
    apply = jax.jit(module.apply)
    graphs = [
        SimpleNamespace(atomic_number=torch.tensor(z, dtype=torch.int64)) for z in compositions
    ]
    with torch.no_grad():
        want = torch_atomref(graphs).numpy()
    for z, w in zip(compositions, want):
        per_atom = np.asarray(apply(params, jnp.asarray(z, jnp.int32)))
        assert per_atom.shape == z.shape
        np.testing.assert_allclose(per_atom.mean(), w, rtol=1e-5, atol=1e-5)


def test_atomref_per_atom_is_element_weight(torch_atomref):
    """Each atom gets the weight of its element, ``weights[Z - 1]`` (single-element structures)."""
    weights = _np(torch_atomref.fc.weight)[0]
    numbers = np.arange(1, MAX_ELEMENTS + 1)
    got = np.asarray(AtomRef().apply({"params": {"weights": weights}}, jnp.asarray(numbers)))
    with torch.no_grad():
        want = torch_atomref(
            [SimpleNamespace(atomic_number=torch.tensor([z] * 3)) for z in numbers]
        ).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_atomref_params_and_zero_init():
    """`AtomRef` has one (94,) ``weights`` param, initialised to zeros (no reference energy)."""
    params = AtomRef().init(jax.random.PRNGKey(0), jnp.asarray([1, 2, 3]))
    assert jax.tree_util.tree_map(jnp.shape, params) == {"params": {"weights": (MAX_ELEMENTS,)}}
    np.testing.assert_array_equal(params["params"]["weights"], 0.0)
