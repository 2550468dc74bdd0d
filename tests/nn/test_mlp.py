"""`MLP` and `GatedMLP` against chgnet's PyTorch `MLP` and `GatedMLP` with the same weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from chgnet.model.functions import MLP as TorchMLP
from chgnet.model.functions import GatedMLP as TorchGatedMLP
from chgnet.model.functions import find_activation

from equijax.nn.mlp import MLP, GatedMLP, GatheredConcat, activation, dense_of_gathered

HIDDEN = [(), (64,), (64, 64, 64)]
RTOL, ATOL = 1e-5, 1e-5  # float32, 64-wide dot products


def _torch_hidden(hidden: tuple[int, ...]):
    """chgnet's spelling of the hidden widths: 0, an int, or a list."""
    if not hidden:
        return 0
    return hidden[0] if len(hidden) == 1 else list(hidden)


def _linears(torch_mlp: TorchMLP) -> list[torch.nn.Linear]:
    return [m for m in torch_mlp.layers if isinstance(m, torch.nn.Linear)]


def _dense_params(torch_mlp: TorchMLP) -> dict:
    """Flax params of an `MLP` from a torch MLP: Dense_k kernel = weight.T, bias = bias."""
    out = {}
    for k, lin in enumerate(_linears(torch_mlp)):
        out[f"Dense_{k}"] = {"kernel": jnp.asarray(lin.weight.detach().numpy().T)}
        if lin.bias is not None:
            out[f"Dense_{k}"]["bias"] = jnp.asarray(lin.bias.detach().numpy())
    return out


def _randomize_layer_norms(module: torch.nn.Module, gen: torch.Generator) -> None:
    """LayerNorm weights start at 1 and 0; randomise them so the mapping is really tested."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=gen))


def _gated_params(torch_gated: TorchGatedMLP, norm: str | None) -> dict:
    out = {"core": _dense_params(torch_gated.mlp_core), "gate": _dense_params(torch_gated.mlp_gate)}
    if norm == "layer":
        for name, ln in (("norm_core", torch_gated.bn1), ("norm_gate", torch_gated.bn2)):
            out[name] = {
                "scale": jnp.asarray(ln.weight.detach().numpy()),
                "bias": jnp.asarray(ln.bias.detach().numpy()),
            }
    return out


def _same_structure(module, params, x) -> None:
    """The hand-built params have exactly the tree (and shapes) flax's init produces."""
    init = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)["params"]
    assert jax.tree_util.tree_structure(init) == jax.tree_util.tree_structure(params)
    shape = lambda a: tuple(a.shape)  # noqa: E731
    assert jax.tree_util.tree_map(shape, init) == jax.tree_util.tree_map(shape, params)


def _inputs(seed: int, n: int = 37, d_in: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d_in)).astype(np.float32)


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("use_bias", [True, False])
def test_mlp_matches_torch(hidden, use_bias):
    """`MLP` equals chgnet's `MLP` (identical weights) for hidden (), (64,), (64, 64, 64)."""
    torch.manual_seed(0)
    ref = TorchMLP(48, output_dim=24, hidden_dim=_torch_hidden(hidden), bias=use_bias).eval()
    x = _inputs(1)
    with torch.no_grad():
        want = ref(torch.tensor(x)).numpy()
    module = MLP(24, hidden, use_bias=use_bias)
    params = _dense_params(ref)
    _same_structure(module, params, x)
    got = np.asarray(jax.jit(module.apply)({"params": params}, x))
    assert got.shape == want.shape == (37, 24)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("act", ["silu", "relu", "tanh", "gelu", "softplus", "sigmoid"])
def test_mlp_activations_match_torch(act):
    """Every activation name gives the same MLP output as chgnet's `find_activation` (exact GELU)."""
    torch.manual_seed(1)
    ref = TorchMLP(48, output_dim=8, hidden_dim=[32, 16], activation=act).eval()
    x = 2.0 * _inputs(2)
    with torch.no_grad():
        want = ref(torch.tensor(x)).numpy()
        want_act = find_activation(act)(torch.tensor(x)).numpy()
    got = np.asarray(MLP(8, (32, 16), act).apply({"params": _dense_params(ref)}, x))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(
        np.asarray(activation(act)(jnp.asarray(x))), want_act, rtol=1e-6, atol=1e-6
    )
    # names are case-insensitive, as in chgnet
    np.testing.assert_array_equal(
        activation(act.upper())(jnp.asarray(x)), activation(act)(jnp.asarray(x))
    )


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("norm", ["layer", None])
def test_gated_mlp_matches_torch(hidden, norm, fused):
    """`GatedMLP` equals chgnet's `GatedMLP(norm=...)` with the same core/gate/LayerNorm weights,
    with the core's and gate's first layers fused into one product or apart."""
    gen = torch.Generator().manual_seed(2)
    torch.manual_seed(2)
    ref = TorchGatedMLP(48, 32, hidden_dim=_torch_hidden(hidden), norm=norm).eval()
    _randomize_layer_norms(ref, gen)
    x = _inputs(3)
    with torch.no_grad():
        want = ref(torch.tensor(x)).numpy()
    module = GatedMLP(32, hidden, norm=norm, fused=fused)
    params = _gated_params(ref, norm)
    _same_structure(module, params, x)
    got = np.asarray(jax.jit(module.apply)({"params": params}, x))
    assert got.shape == want.shape == (37, 32)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_gated_mlp_layer_norm_on_large_offsets():
    """LayerNorm matches torch's (two-pass variance, eps 1e-5) when features have a large mean."""
    gen = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    ref = TorchGatedMLP(16, 16, hidden_dim=0, norm="layer").eval()
    _randomize_layer_norms(ref, gen)
    with torch.no_grad():  # push the core output to a mean of ~1e3 with a small spread
        ref.mlp_core.layers[-1].bias.add_(1e3)
    x = _inputs(4, n=20, d_in=16)
    with torch.no_grad():
        want = ref(torch.tensor(x)).numpy()
    got = np.asarray(
        GatedMLP(16, (), norm="layer").apply({"params": _gated_params(ref, "layer")}, x)
    )
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("norm", ["layer", None])
def test_gated_mlp_permutation_of_batch_rows(norm):
    """Permuting the rows of the batch permutes the outputs the same way (rows are independent)."""
    module = GatedMLP(32, (64,), norm=norm)
    x = _inputs(5)
    params = jax.jit(module.init)(jax.random.PRNGKey(1), x)
    perm = np.random.default_rng(6).permutation(len(x))
    apply = jax.jit(module.apply)
    out, out_perm = np.asarray(apply(params, x)), np.asarray(apply(params, x[perm]))
    np.testing.assert_allclose(out_perm, out[perm], rtol=1e-6, atol=1e-6)
    mlp = MLP(8, (64, 64))
    mlp_params = jax.jit(mlp.init)(jax.random.PRNGKey(2), x)
    np.testing.assert_allclose(
        mlp.apply(mlp_params, x[perm]),
        np.asarray(mlp.apply(mlp_params, x))[perm],
        rtol=1e-6,
        atol=1e-6,
    )


def test_unknown_activation_raises_value_error():
    """`activation` raises ValueError for an unknown name, and so does an MLP built with it."""
    with pytest.raises(ValueError, match="swishy"):
        activation("swishy")
    with pytest.raises(ValueError):
        MLP(4, (8,), act="swishy").init(jax.random.PRNGKey(0), jnp.ones((2, 3)))


def test_gated_mlp_unknown_norm_raises_value_error():
    """A norm other than "layer" or None raises ValueError (no silent batch norm)."""
    with pytest.raises(ValueError):
        GatedMLP(4, norm="batch").init(jax.random.PRNGKey(0), jnp.ones((2, 3)))


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("norm", ["layer", None])
def test_gated_mlp_of_gathered_parts_matches_torch_values_and_gradients(norm, fused):
    """A `GatheredConcat` input (never concatenated: small sources multiply before they gather,
    large ones gather first, and one part is already per row) gives chgnet's `GatedMLP` of the
    explicit concatenation, and the same gradients with respect to every source and every param
    (torch autograd is the reference), whether the core's and gate's first layers run as one
    product (``fused``) or apart."""
    gen = torch.Generator().manual_seed(4)
    torch.manual_seed(4)
    ref = TorchGatedMLP(8 + 16 + 12 + 12, 32, hidden_dim=24, norm=norm).eval()
    _randomize_layer_norms(ref, gen)
    rng = np.random.default_rng(5)
    rows = 37
    sources = [
        rng.standard_normal(s).astype(np.float32) for s in ((5, 8), (60, 16), (rows, 12), (5, 12))
    ]  # fewer, more, per-row, fewer rows
    index = [rng.integers(0, 5, rows), rng.integers(0, 60, rows), None, rng.integers(0, 5, rows)]
    weights = rng.standard_normal((rows, 32)).astype(np.float32)

    torch_sources = [torch.tensor(s, requires_grad=True) for s in sources]
    concat = torch.cat(
        [s if i is None else s[torch.tensor(i)] for s, i in zip(torch_sources, index)], -1
    )
    want = ref(concat)
    (want * torch.tensor(weights)).sum().backward()

    module = GatedMLP(32, (24,), norm=norm, fused=fused)
    params = {"params": _gated_params(ref, norm)}

    def weighted(p, srcs):
        gathered = GatheredConcat(
            tuple(
                (jnp.asarray(s), None if i is None else jnp.asarray(i)) for s, i in zip(srcs, index)
            )
        )
        out = module.apply(p, gathered)
        return jnp.sum(out * weights), out

    (param_grads, grads), got = jax.jit(jax.grad(weighted, argnums=(0, 1), has_aux=True))(
        params, [jnp.asarray(s) for s in sources]
    )
    np.testing.assert_allclose(got, want.detach().numpy(), rtol=RTOL, atol=ATOL)
    for g, t in zip(grads, torch_sources):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-4, atol=1e-4)
    for mlp, torch_mlp in (("core", ref.mlp_core), ("gate", ref.mlp_gate)):
        for k, linear in enumerate(_linears(torch_mlp)):
            got_layer = param_grads["params"][mlp][f"Dense_{k}"]
            np.testing.assert_allclose(
                got_layer["kernel"], linear.weight.grad.numpy().T, rtol=1e-4, atol=1e-4
            )
            np.testing.assert_allclose(
                got_layer["bias"], linear.bias.grad.numpy(), rtol=1e-4, atol=1e-4
            )


def test_dense_of_gathered_rejects_parts_that_do_not_fill_the_kernel():
    parts = GatheredConcat(((jnp.ones((3, 4)), jnp.array([0, 1])), (jnp.ones((2, 5)), None)))
    assert dense_of_gathered(parts, jnp.ones((9, 2))).shape == (2, 2)
    with pytest.raises(ValueError, match=r"widths \[4, 5\] \(sum 9\) do not match a kernel of 10"):
        dense_of_gathered(parts, jnp.ones((10, 2)))


def test_gathered_dense_refuses_options_it_does_not_implement():
    """``dtype`` and ``dot_general_cls`` of `flax.linen.Dense` would be silently ignored: refused,
    by `GatheredDense` and by the fused gates' `KernelProduct`."""
    from equijax.nn.mlp import GatheredDense, KernelProduct

    x = jnp.ones((2, 3))
    for layer in (GatheredDense(4, dtype=jnp.bfloat16), GatheredDense(4, dot_general_cls=object)):
        with pytest.raises(NotImplementedError, match="neither dtype nor dot_general_cls"):
            layer.init(jax.random.key(0), x)
    for layer in (KernelProduct(4, dtype=jnp.bfloat16), KernelProduct(4, dot_general_cls=object)):
        with pytest.raises(NotImplementedError, match="neither dtype nor dot_general_cls"):
            layer.init(jax.random.key(0), x, jnp.ones((3, 4)))
