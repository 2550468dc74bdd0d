"""`FullyConnectedNet` / `fully_connected` against e3nn (torch)'s ``FullyConnectedNet`` with the
same weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from e3nn.nn import FullyConnectedNet as TorchFullyConnectedNet

from equijax.nn.fully_connected import FullyConnectedNet, fully_connected
from equijax.nn.normalized_activation import normalized_activation

FEATURES = [8, 16, 16, 5]
TORCH_ACTS = {"silu": torch.nn.functional.silu, "tanh": torch.tanh}


def _torch_net(name: str):
    torch.manual_seed(0)
    return TorchFullyConnectedNet(FEATURES, TORCH_ACTS[name]).eval()


def _torch_weights(net) -> list[np.ndarray]:
    return [getattr(net, f"layer{k}").weight.detach().numpy() for k in range(len(FEATURES) - 1)]


def _inputs(rng, shape):
    return rng.normal(size=shape + (FEATURES[0],)).astype(np.float32)


@pytest.mark.parametrize("name", list(TORCH_ACTS))
def test_module_matches_torch(name):
    ref = _torch_net(name)
    x = _inputs(np.random.default_rng(1), (3, 7))
    with torch.no_grad():
        want = ref(torch.tensor(x)).numpy()

    module = FullyConnectedNet(FEATURES, activation=name)
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)["params"]
    weights = _torch_weights(ref)
    assert sorted(shapes) == [f"layer{k}" for k in range(len(weights))]
    for k, w in enumerate(weights):
        assert shapes[f"layer{k}"].shape == w.shape
    params = {"params": {f"layer{k}": jnp.asarray(w) for k, w in enumerate(weights)}}
    got = module.apply(params, x)
    assert got.shape == (3, 7, FEATURES[-1])
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5, rtol=1e-5)


def test_function_matches_torch():
    ref = _torch_net("silu")
    x = _inputs(np.random.default_rng(2), (11,))
    with torch.no_grad():
        want = ref(torch.tensor(x)).numpy()
    weights = [jnp.asarray(w) for w in _torch_weights(ref)]
    got = fully_connected(jnp.asarray(x), weights, normalized_activation("silu"))
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5, rtol=1e-5)


def test_init_shapes_and_wrong_width():
    module = FullyConnectedNet(FEATURES)
    params = module.init(jax.random.PRNGKey(0), jnp.zeros((2, FEATURES[0])))
    for k, (n_in, n_out) in enumerate(zip(FEATURES[:-1], FEATURES[1:])):
        assert params["params"][f"layer{k}"].shape == (n_in, n_out)
    with pytest.raises(ValueError, match="features"):
        module.apply(params, jnp.zeros((2, FEATURES[0] - 1)))
    with pytest.raises(ValueError):
        module.init(jax.random.PRNGKey(0), jnp.zeros((2, FEATURES[0] + 1)))
