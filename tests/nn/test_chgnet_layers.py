"""`AtomConv`, `BondConv` and `AngleUpdate` against chgnet's PyTorch layers with identical random
weights on a small random graph, plus permutation equivariance and the sorted-receivers flag."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from chgnet.model import layers as torch_layers

from equijax.nn.chgnet import AngleUpdate, AtomConv, BondConv

N_ATOMS, N_PAIRS = 9, 16
ATOM_DIM, BOND_DIM, ANGLE_DIM = 16, 12, 10  # distinct, so a mixed-up concatenation cannot pass
RTOL, ATOL = 2e-5, 2e-5  # float32


class Graph:
    """A random atom graph (both directions of each undirected pair, sorted by centre atom) and
    its bond graph (angles between the short pairs that share a centre atom). The last atom has
    no edges; one pair is a self-image (i, i) as in small periodic cells."""

    def __init__(self, seed: int):
        rng = np.random.default_rng(seed)
        i = rng.integers(0, N_ATOMS - 1, N_PAIRS)
        j = (i + rng.integers(1, N_ATOMS - 1, N_PAIRS)) % (N_ATOMS - 1)
        j[0] = i[0]  # a pair between an atom and its own periodic image
        center = np.concatenate([i, j])
        neighbor = np.concatenate([j, i])
        pair = np.concatenate([np.arange(N_PAIRS), np.arange(N_PAIRS)])
        order = np.argsort(center, kind="stable")
        self.receivers, self.senders, self.pair = center[order], neighbor[order], pair[order]
        short = rng.random(N_PAIRS) < 0.7  # pairs inside the bond-graph cutoff
        angles = []
        for c in range(N_ATOMS):
            edges = [
                e for e in range(len(self.pair)) if self.receivers[e] == c and short[self.pair[e]]
            ]
            angles += [(c, self.pair[a], self.pair[b]) for a in edges for b in edges if a != b]
        self.bond_graph = np.asarray(angles, dtype=np.int64)
        self.center, self.pair_i, self.pair_j = self.bond_graph.T
        n_angles = len(self.bond_graph)
        assert n_angles > 10
        self.atom_feas = rng.standard_normal((N_ATOMS, ATOM_DIM)).astype(np.float32)
        self.bond_feas = rng.standard_normal((N_PAIRS, BOND_DIM)).astype(np.float32)
        self.angle_feas = rng.standard_normal((n_angles, ANGLE_DIM)).astype(np.float32)
        self.weights_ag = rng.uniform(0, 1, (N_PAIRS, ATOM_DIM)).astype(np.float32)
        self.weights_bg = rng.uniform(0, 1, (N_PAIRS, BOND_DIM)).astype(np.float32)

    @property
    def atom_graph(self) -> np.ndarray:
        """chgnet's (E, 2) [centre, neighbour]."""
        return np.stack([self.receivers, self.senders], axis=1)


def _t(x) -> torch.Tensor:
    return torch.tensor(np.array(x))


def _np(t: torch.Tensor) -> jnp.ndarray:
    return jnp.asarray(t.detach().numpy())


def _randomize(module: torch.nn.Module, seed: int) -> None:
    """Random weights everywhere, LayerNorm scales and biases included."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=gen))
            elif isinstance(m, torch.nn.Linear):
                bound = 1 / np.sqrt(m.in_features)
                m.weight.copy_(bound * (2 * torch.rand(m.weight.shape, generator=gen) - 1))
                if m.bias is not None:
                    m.bias.copy_(bound * (2 * torch.rand(m.bias.shape, generator=gen) - 1))


def _linears(seq) -> list:
    return [m for m in seq.layers if isinstance(m, torch.nn.Linear)]


def _dense(lin: torch.nn.Linear) -> dict:
    out = {"kernel": _np(lin.weight).T}
    if lin.bias is not None:
        out["bias"] = _np(lin.bias)
    return out


def _gated(g, norm: bool) -> dict:
    out = {
        name: {f"Dense_{k}": _dense(lin) for k, lin in enumerate(_linears(mlp))}
        for name, mlp in (("core", g.mlp_core), ("gate", g.mlp_gate))
    }
    if norm:
        out["norm_core"] = {"scale": _np(g.bn1.weight), "bias": _np(g.bn1.bias)}
        out["norm_gate"] = {"scale": _np(g.bn2.weight), "bias": _np(g.bn2.bias)}
    return out


def _layer_params(layer, gated, gmlp_norm, norm_module) -> dict:
    """Flax params of a conv layer from its torch twin (gated MLP, output Linear, optional norm)."""
    p = {"gated_mlp": _gated(gated, gmlp_norm == "layer")}
    if hasattr(layer, "mlp_out"):
        (lin,) = _linears(layer.mlp_out)
        p["mlp_out"] = _dense(lin)
    if norm_module is not None:
        p["norm"] = {"scale": _np(norm_module.weight), "bias": _np(norm_module.bias)}
    return {"params": p}


def _check_structure(module, params, *args) -> None:
    init = jax.eval_shape(module.init, jax.random.PRNGKey(0), *args)
    assert jax.tree_util.tree_structure(init) == jax.tree_util.tree_structure(params)
    shape = lambda a: tuple(a.shape)  # noqa: E731
    assert jax.tree_util.tree_map(shape, init) == jax.tree_util.tree_map(shape, params)


CONFIGS = [  # (gMLP_norm, mlp_out_bias, conv norm)
    pytest.param("layer", False, None, id="layer-nobias"),
    pytest.param("layer", True, None, id="layer-bias"),
    pytest.param(None, True, "layer", id="nognorm-bias-convnorm"),
]


@pytest.fixture(scope="module")
def graph() -> Graph:
    """The shared random graph."""
    return Graph(0)


@pytest.mark.parametrize("gmlp_norm,out_bias,norm", CONFIGS)
def test_atom_conv_matches_torch(graph, gmlp_norm, out_bias, norm):
    """`AtomConv` equals chgnet's `AtomConv(hidden_dim=64)` with the same weights."""
    torch.manual_seed(0)
    ref = torch_layers.AtomConv(
        atom_fea_dim=ATOM_DIM,
        bond_fea_dim=BOND_DIM,
        hidden_dim=64,
        gMLP_norm=gmlp_norm,
        mlp_out_bias=out_bias,
        norm=norm,
    ).eval()
    _randomize(ref, 1)
    with torch.no_grad():
        want = ref(
            _t(graph.atom_feas),
            _t(graph.bond_feas),
            _t(graph.weights_ag),
            _t(graph.atom_graph),
            _t(graph.pair),
        ).numpy()
    module = AtomConv(hidden=(64,), gated_norm=gmlp_norm, out_bias=out_bias, norm=norm)
    params = _layer_params(ref, ref.twoBody_atom, gmlp_norm, ref.atom_norm)
    args = (
        graph.atom_feas,
        graph.bond_feas,
        graph.weights_ag,
        graph.receivers,
        graph.senders,
        graph.pair,
    )
    _check_structure(module, params, *args)
    got = np.asarray(jax.jit(module.apply)(params, *args))
    assert got.shape == want.shape == (N_ATOMS, ATOM_DIM)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    # the edgeless last atom only gets the residual (and the output bias, through the norm)
    if norm is None and not out_bias:
        np.testing.assert_array_equal(got[-1], graph.atom_feas[-1])


@pytest.mark.parametrize("gmlp_norm,out_bias,norm", CONFIGS)
def test_bond_conv_matches_torch(graph, gmlp_norm, out_bias, norm):
    """`BondConv` equals chgnet's `BondConv(hidden_dim=64)` with the same weights."""
    torch.manual_seed(0)
    ref = torch_layers.BondConv(
        ATOM_DIM,
        BOND_DIM,
        ANGLE_DIM,
        hidden_dim=64,
        gMLP_norm=gmlp_norm,
        mlp_out_bias=out_bias,
        norm=norm,
    ).eval()
    _randomize(ref, 2)
    with torch.no_grad():
        want = ref(
            _t(graph.atom_feas),
            _t(graph.bond_feas),
            _t(graph.weights_bg),
            _t(graph.angle_feas),
            _t(graph.bond_graph),
        ).numpy()
    module = BondConv(hidden=(64,), gated_norm=gmlp_norm, out_bias=out_bias, norm=norm)
    params = _layer_params(ref, ref.twoBody_bond, gmlp_norm, ref.bond_norm)
    args = (
        graph.atom_feas,
        graph.bond_feas,
        graph.weights_bg,
        graph.angle_feas,
        graph.center,
        graph.pair_i,
        graph.pair_j,
    )
    _check_structure(module, params, *args)
    got = np.asarray(jax.jit(module.apply)(params, *args))
    assert got.shape == want.shape == (N_PAIRS, BOND_DIM)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("gmlp_norm,norm", [("layer", None), (None, "layer")])
def test_angle_update_matches_torch(graph, gmlp_norm, norm):
    """`AngleUpdate` equals chgnet's `AngleUpdate(hidden_dim=0)` with the same weights."""
    torch.manual_seed(0)
    ref = torch_layers.AngleUpdate(
        ATOM_DIM, BOND_DIM, ANGLE_DIM, hidden_dim=0, gMLP_norm=gmlp_norm, norm=norm
    ).eval()
    _randomize(ref, 3)
    with torch.no_grad():
        want = ref(
            _t(graph.atom_feas), _t(graph.bond_feas), _t(graph.angle_feas), _t(graph.bond_graph)
        ).numpy()
    module = AngleUpdate(hidden=(), gated_norm=gmlp_norm, norm=norm)
    params = _layer_params(ref, ref.twoBody_bond, gmlp_norm, ref.angle_norm)
    args = (
        graph.atom_feas,
        graph.bond_feas,
        graph.angle_feas,
        graph.center,
        graph.pair_i,
        graph.pair_j,
    )
    _check_structure(module, params, *args)
    got = np.asarray(jax.jit(module.apply)(params, *args))
    assert got.shape == want.shape == (len(graph.bond_graph), ANGLE_DIM)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.fixture(scope="module")
def atom_conv():
    """An `AtomConv` with random flax params (output bias on, so every path is exercised)."""
    g = Graph(0)
    module = AtomConv(hidden=(64,), out_bias=True)
    params = jax.jit(module.init)(
        jax.random.PRNGKey(3),
        g.atom_feas,
        g.bond_feas,
        g.weights_ag,
        g.receivers,
        g.senders,
        g.pair,
    )
    return module, params


def test_atom_conv_permutation_equivariance(atom_conv):
    """Relabelling atoms (and undirected pairs, and shuffling edges) relabels the output rows."""
    module, params = atom_conv
    g = Graph(1)
    rng = np.random.default_rng(7)
    perm_atoms = rng.permutation(N_ATOMS)  # old atom a becomes perm_atoms[a]
    perm_pairs = rng.permutation(N_PAIRS)
    edges = rng.permutation(len(g.pair))
    inv_atoms, inv_pairs = np.argsort(perm_atoms), np.argsort(perm_pairs)
    apply = jax.jit(module.apply, static_argnames="receivers_sorted")
    out = np.asarray(
        apply(params, g.atom_feas, g.bond_feas, g.weights_ag, g.receivers, g.senders, g.pair)
    )
    out_perm = np.asarray(
        apply(
            params,
            g.atom_feas[inv_atoms],
            g.bond_feas[inv_pairs],
            g.weights_ag[inv_pairs],
            perm_atoms[g.receivers][edges],
            perm_atoms[g.senders][edges],
            perm_pairs[g.pair][edges],
            receivers_sorted=False,
        )
    )
    np.testing.assert_allclose(out_perm[perm_atoms], out, rtol=1e-5, atol=1e-5)


def test_atom_conv_sorted_flag_matches_unsorted(atom_conv):
    """Sorted edges with ``receivers_sorted=True`` give the same atoms as shuffled edges with False."""
    module, params = atom_conv
    g = Graph(2)
    assert np.all(np.diff(g.receivers) >= 0)
    shuffle = np.random.default_rng(8).permutation(len(g.pair))
    apply = jax.jit(module.apply, static_argnames="receivers_sorted")
    sorted_out = apply(
        params,
        g.atom_feas,
        g.bond_feas,
        g.weights_ag,
        g.receivers,
        g.senders,
        g.pair,
        receivers_sorted=True,
    )
    unsorted_out = apply(
        params,
        g.atom_feas,
        g.bond_feas,
        g.weights_ag,
        g.receivers[shuffle],
        g.senders[shuffle],
        g.pair[shuffle],
        receivers_sorted=False,
    )
    np.testing.assert_allclose(
        np.asarray(unsorted_out), np.asarray(sorted_out), rtol=1e-5, atol=1e-5
    )


def test_bond_conv_permutation_of_angles(graph):
    """Shuffling the angle list (with its features) leaves the bond update unchanged."""
    module = BondConv(hidden=(64,), out_bias=True)
    args = (
        graph.atom_feas,
        graph.bond_feas,
        graph.weights_bg,
        graph.angle_feas,
        graph.center,
        graph.pair_i,
        graph.pair_j,
    )
    params = jax.jit(module.init)(jax.random.PRNGKey(4), *args)
    shuffle = np.random.default_rng(9).permutation(len(graph.bond_graph))
    apply = jax.jit(module.apply)
    out = apply(params, *args)
    out_shuffled = apply(
        params,
        graph.atom_feas,
        graph.bond_feas,
        graph.weights_bg,
        graph.angle_feas[shuffle],
        graph.center[shuffle],
        graph.pair_i[shuffle],
        graph.pair_j[shuffle],
    )
    np.testing.assert_allclose(np.asarray(out_shuffled), np.asarray(out), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk", [5, 7])  # 7: the edge/angle counts need padded pieces
def test_chunked_messages_equal_the_plain_layers_and_their_gradients(chunk):
    """``chunk`` (the memory-lean pieces, a checkpointed scan) is the same function as one
    piece, with the same gradients with respect to every input and param."""
    g = Graph(3)
    args = {
        "atom": (g.atom_feas, g.bond_feas, g.weights_ag, g.receivers, g.senders, g.pair),
        "bond": (
            g.atom_feas,
            g.bond_feas,
            g.weights_bg,
            g.angle_feas,
            g.center,
            g.pair_i,
            g.pair_j,
        ),
        "angle": (g.atom_feas, g.bond_feas, g.angle_feas, g.center, g.pair_i, g.pair_j),
    }
    args = {k: tuple(jnp.asarray(a) for a in v) for k, v in args.items()}
    layers = {"atom": AtomConv, "bond": BondConv, "angle": AngleUpdate}
    for name, cls in layers.items():
        plain, chunked = cls(), cls(chunk=chunk)
        params = plain.init(jax.random.PRNGKey(0), *args[name])
        chunked_params = chunked.init(jax.random.PRNGKey(0), *args[name])
        assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(chunked_params)

        def loss(module, p, atom_feas, bond_feas, name=name):  # both are always first
            full = (atom_feas, bond_feas, *args[name][2:])
            return jnp.sum(jnp.sin(module.apply(p, *full)))

        want = jax.jit(jax.value_and_grad(functools.partial(loss, plain), argnums=(0, 1, 2)))
        got = jax.jit(jax.value_and_grad(functools.partial(loss, chunked), argnums=(0, 1, 2)))
        (v1, g1), (v2, g2) = want(params, *args[name][:2]), got(params, *args[name][:2])
        np.testing.assert_allclose(v2, v1, rtol=RTOL, atol=ATOL)
        for a, b in zip(jax.tree_util.tree_leaves(g2), jax.tree_util.tree_leaves(g1)):
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
