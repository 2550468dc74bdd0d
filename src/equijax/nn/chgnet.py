"""CHGNet's interaction layers: atom convolution on the atom graph, bond convolution and angle
update on the bond graph. Shapes: N atoms, E directed edges, P undirected pairs, A angles,
F features. Bond features live on undirected pairs, as in CHGNet.

Each message is a gated MLP of a concatenation of gathered features, ``[x_i, b_ij, x_j]`` on the
atom graph and ``[b_i, b_j, a, x_c]`` on the bond graph. With ``factorized`` (the default) the
concatenation is never built: the first layers multiply the atom and bond features by their rows
of the kernel once per atom or bond and gather the products (`equijax.nn.mlp.dense_of_gathered`),
about 3x fewer matmul FLOPs on the angles. (XLA:CPU keeps the gathered products for the backward
pass instead of the (A, 4F) input: 5-8% more memory there.) The result is the same function up to
float rounding; ``factorized=False`` is the plain computation."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from equijax.nn.mlp import GatedMLP, GatheredConcat, layer_norm
from equijax.nn.pieces import scan_pieces


def _optional_norm(norm: str | None, name: str):
    if norm is None:
        return lambda x: x
    if norm == "layer":
        return layer_norm(name)
    raise ValueError(f"unsupported conv norm {norm!r} (use 'layer' or None)")


class _GatedConv(nn.Module):
    """Shared hyperparameters of the convolutions: gated-MLP hidden widths, activation and norm,
    bias of the output layer, and an optional norm after the residual sum."""

    hidden: tuple[int, ...] = (64,)
    act: str = "silu"
    gated_norm: str | None = "layer"
    out_bias: bool = False
    norm: str | None = None
    factorized: bool = True  # first layers multiply before gathering (see the module docstring)
    fused_gates: bool = True  # core and gate first layers as one product (`GatedMLP.fused`)
    # > 0: messages in chunks of this many edges/angles, each recomputed in the backward pass
    # (`_scan_pieces`); the memory-lean mode of large structures. 0: all at once.
    chunk: int = 0


def _scan_pieces(mlp, inputs_of, n: int, chunk: int, indexed, reduce=None):
    """`equijax.nn.pieces.scan_pieces` of a gated MLP's messages: ``inputs_of(*piece_arrays)``
    builds the MLP's input of a piece and returns (input, post), ``post(messages)`` finishing
    them; ``indexed`` and ``reduce`` as there."""
    if mlp.is_initializing():
        first = [a[:chunk] for a in indexed]
        x, _ = inputs_of(*first)
        mlp(x)  # creates the params; the scan below reads them
    params = mlp.variables["params"]
    unbound = mlp.clone(parent=None)

    def messages_of(*arrays):
        x, post = inputs_of(*arrays)
        return post(unbound.apply({"params": params}, x))

    return scan_pieces(messages_of, n, chunk, indexed, reduce)


class AtomConv(_GatedConv):
    """Atom update ``x_i + W_out sum_j gMLP([x_i, b_ij, x_j]) * w_ij``.

    Args (call):
        atom_feas: (N, F) atom features.
        bond_feas: (P, Fb) bond features per undirected pair.
        bond_weights: (P, F) smooth radial weights per pair (zero at the cutoff).
        receivers, senders: (E,) centre and neighbour atom of each directed edge.
        pair: (E,) undirected pair of each directed edge.
        receivers_sorted: whether ``receivers`` is sorted (true for equijax graphs).

    Returns (N, F).
    """

    @nn.compact
    def __call__(
        self,
        atom_feas,
        bond_feas,
        bond_weights,
        receivers,
        senders,
        pair,
        receivers_sorted: bool = True,
    ):
        features = atom_feas.shape[-1]
        mlp = GatedMLP(
            features, self.hidden, self.act, self.gated_norm, self.fused_gates, name="gated_mlp"
        )
        n_atoms = atom_feas.shape[0]

        def inputs_of(r, s, p):
            x = _inputs(((atom_feas, r), (bond_feas, p), (atom_feas, s)), self.factorized)
            return x, lambda m: m * bond_weights[p]

        def segment(acc, messages, r, s, p):
            return acc + jax.ops.segment_sum(
                messages, r, n_atoms, indices_are_sorted=receivers_sorted
            )

        if 0 < self.chunk < receivers.shape[0]:
            zeros = jnp.zeros((n_atoms, features), atom_feas.dtype)
            summed = _scan_pieces(
                mlp,
                inputs_of,
                receivers.shape[0],
                self.chunk,
                (receivers, senders, pair),
                (zeros, segment),
            )
        else:
            x, post = inputs_of(receivers, senders, pair)
            summed = segment(0.0, post(mlp(x)), receivers, senders, pair)
        out = nn.Dense(features, use_bias=self.out_bias, name="mlp_out")(summed) + atom_feas
        return _optional_norm(self.norm, "norm")(out)


def _inputs(parts, factorized: bool):
    """A message input ``[x[index] for x, index in parts]``: kept in pieces for the gated MLP
    (`GatheredConcat`) when ``factorized``, else concatenated."""
    gathered = GatheredConcat(tuple(parts))
    return gathered if factorized else gathered.materialize()


def _bond_graph_inputs(atom_feas, bond_feas, angle_feas, center, pair_i, pair_j, factorized):
    """CHGNet's bond-graph message input ``[b_i, b_j, a_ijk, x_center]``, (A, 2Fb + Fa + F)."""
    return _inputs(
        ((bond_feas, pair_i), (bond_feas, pair_j), (angle_feas, None), (atom_feas, center)),
        factorized,
    )


class BondConv(_GatedConv):
    """Bond update ``b_i + W_out sum_{angles (i, j)} gMLP([b_i, b_j, a, x_c]) * w_i * w_j``.

    Args (call):
        atom_feas: (N, F); bond_feas: (P, Fb); bond_weights: (P, Fb) bond-graph radial weights;
        angle_feas: (A, Fa); center: (A,) centre atom; pair_i, pair_j: (A,) undirected pairs
        of the updated bond and of the other bond of each angle.

    Returns (P, Fb); pairs outside the bond graph only get the output layer's bias.
    """

    @nn.compact
    def __call__(self, atom_feas, bond_feas, bond_weights, angle_feas, center, pair_i, pair_j):
        features = bond_feas.shape[-1]
        mlp = GatedMLP(
            features, self.hidden, self.act, self.gated_norm, self.fused_gates, name="gated_mlp"
        )
        n_bonds = bond_feas.shape[0]

        def inputs_of(a, c, i, j):
            x = _bond_graph_inputs(atom_feas, bond_feas, a, c, i, j, self.factorized)
            return x, lambda m: m * bond_weights[i] * bond_weights[j]

        def segment(acc, messages, a, c, i, j):
            return acc + jax.ops.segment_sum(messages, i, n_bonds)

        arrays = (angle_feas, center, pair_i, pair_j)
        if 0 < self.chunk < center.shape[0]:
            zeros = jnp.zeros((n_bonds, features), bond_feas.dtype)
            summed = _scan_pieces(
                mlp, inputs_of, center.shape[0], self.chunk, arrays, (zeros, segment)
            )
        else:
            x, post = inputs_of(*arrays)
            summed = segment(0.0, post(mlp(x)), *arrays)
        out = nn.Dense(features, use_bias=self.out_bias, name="mlp_out")(summed) + bond_feas
        return _optional_norm(self.norm, "norm")(out)


class AngleUpdate(nn.Module):
    """Angle update ``a + gMLP([b_i, b_j, a, x_c])``; arguments as `BondConv` minus the weights.

    Returns (A, Fa).
    """

    hidden: tuple[int, ...] = ()
    act: str = "silu"
    gated_norm: str | None = "layer"
    norm: str | None = None
    factorized: bool = True  # as `_GatedConv.factorized`
    fused_gates: bool = True  # as `_GatedConv.fused_gates`
    chunk: int = 0  # as `_GatedConv.chunk`

    @nn.compact
    def __call__(self, atom_feas, bond_feas, angle_feas, center, pair_i, pair_j):
        mlp = GatedMLP(
            angle_feas.shape[-1],
            self.hidden,
            self.act,
            self.gated_norm,
            self.fused_gates,
            name="gated_mlp",
        )

        def inputs_of(a, c, i, j):
            x = _bond_graph_inputs(atom_feas, bond_feas, a, c, i, j, self.factorized)
            return x, lambda m: m + a

        arrays = (angle_feas, center, pair_i, pair_j)
        if 0 < self.chunk < center.shape[0]:
            out = _scan_pieces(mlp, inputs_of, center.shape[0], self.chunk, arrays)
        else:
            x, post = inputs_of(*arrays)
            out = post(mlp(x))
        return _optional_norm(self.norm, "norm")(out)
