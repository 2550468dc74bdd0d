"""Multilayer perceptrons in CHGNet's layout: a plain MLP and the gated MLP
``act(norm(core(x))) * sigmoid(norm(gate(x)))``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS = {
    "silu": jax.nn.silu,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # torch's default GELU is exact
    "softplus": jax.nn.softplus,
    "sigmoid": jax.nn.sigmoid,
}


def activation(name: str):
    """The activation function called ``name`` (silu, relu, tanh, gelu, softplus, sigmoid)."""
    try:
        return ACTIVATIONS[name.lower()]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}"
        ) from None


def hidden_layers(hidden: int | Sequence[int] | None) -> tuple[int, ...]:
    """Normalise CHGNet's ``hidden_dim`` (None, 0, an int or a list) to a tuple of widths."""
    if hidden is None or hidden == 0:
        return ()
    if isinstance(hidden, int):
        return (hidden,)
    return tuple(int(h) for h in hidden)


def layer_norm(name: str | None = None) -> nn.LayerNorm:
    """LayerNorm with torch's conventions (epsilon 1e-5, two-pass variance)."""
    return nn.LayerNorm(epsilon=1e-5, use_fast_variance=False, name=name)


class GatheredConcat(NamedTuple):
    """The concatenation ``[x[index] for x, index in parts]`` along the last axis, kept in pieces.

    ``parts``: ``(x, index)`` pairs, ``x`` of shape (M_k, d_k) and ``index`` (R,) integer rows
    (or None: ``x`` already has the R output rows). `MLP` and `GatedMLP` take one in place of an
    array and never build it: see `dense_of_gathered`.
    """

    parts: tuple[tuple[jax.Array, jax.Array | None], ...]

    def materialize(self) -> jax.Array:
        """The concatenated array itself, (R, sum d_k)."""
        return jnp.concatenate([x if i is None else x[i] for x, i in self.parts], axis=-1)


def dense_of_gathered(inputs: GatheredConcat, kernel: jax.Array, dot=jax.lax.dot_general):
    """``inputs.materialize() @ kernel`` without the concatenation: (R, features).

    Each part meets its own rows of ``kernel``. A part with fewer source rows than output rows
    (atom or bond features gathered onto edges or angles) is multiplied *before* it is gathered,
    so the matmul runs once per atom or bond instead of once per edge or angle, and the kernel's
    gradient needs no (R, sum d_k) input. Equal to the concatenated product up to float rounding.
    ``dot``: the `jax.lax.dot_general` to use (the precision emulation swaps it).
    """
    widths = [x.shape[-1] for x, _ in inputs.parts]
    if sum(widths) != kernel.shape[0]:
        raise ValueError(
            f"parts of widths {widths} (sum {sum(widths)}) do not match a kernel "
            f"of {kernel.shape[0]} input rows"
        )
    out, start = None, 0
    for (x, index), width in zip(inputs.parts, widths):
        rows = kernel[start : start + width]
        start += width
        if index is not None and x.shape[0] >= index.shape[0]:
            x, index = x[index], None  # as many rows to multiply either way: gather first
        term = dot(x, rows, (((x.ndim - 1,), (0,)), ((), ())))
        if index is not None:
            term = term[index]
        out = term if out is None else out + term
    return out


def _gathered_product(dense: nn.Dense, inputs, kernel: jax.Array) -> jax.Array:
    """``dense_of_gathered(inputs, kernel)`` with ``dense``'s ``precision`` and ``dot_general``
    (a plain array is one part); ``dtype`` and ``dot_general_cls`` must stay unset."""
    if dense.dtype is not None or dense.dot_general_cls is not None:
        raise NotImplementedError(
            f"{type(dense).__name__} supports neither dtype nor dot_general_cls"
        )
    if not isinstance(inputs, GatheredConcat):
        inputs = GatheredConcat(((inputs, None),))
    dot = functools.partial(dense.dot_general or jax.lax.dot_general, precision=dense.precision)
    return dense_of_gathered(inputs, kernel, dot)


class GatheredDense(nn.Dense):
    """`flax.linen.Dense` over a `GatheredConcat` (or a plain array): the same params (``kernel``
    of shape (sum d_k, features), ``bias``), computed by `dense_of_gathered`. Honours
    ``precision`` and ``dot_general``; ``dtype`` and ``dot_general_cls`` must stay unset."""

    @nn.compact
    def __call__(self, inputs):
        parts = inputs.parts if isinstance(inputs, GatheredConcat) else ((inputs, None),)
        d_in = sum(x.shape[-1] for x, _ in parts)
        kernel = self.param("kernel", self.kernel_init, (d_in, self.features), self.param_dtype)
        out = _gathered_product(self, inputs, kernel)
        if self.use_bias:
            out = out + self.param("bias", self.bias_init, (self.features,), self.param_dtype)
        return out


class DenseParams(nn.Module):
    """The params of a `GatheredDense` (or ``nn.Dense``) of ``features`` outputs, created under
    its name without applying it: call with the input width, get ``(kernel, bias)`` (bias None
    without ``use_bias``). Lets a module multiply several layers' kernels at once."""

    features: int
    use_bias: bool = True
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros

    @nn.compact
    def __call__(self, d_in: int):
        kernel = self.param("kernel", self.kernel_init, (d_in, self.features), jnp.float32)
        bias = (
            self.param("bias", self.bias_init, (self.features,), jnp.float32)
            if self.use_bias
            else None
        )
        return kernel, bias


class KernelProduct(nn.Dense):
    """``dense_of_gathered(inputs, kernel)`` of a given kernel: no params of its own. An
    ``nn.Dense`` (``features``: the kernel's columns) so that the precision emulation
    (`equijax.nn.precision`) and ``precision``/``dot_general`` reach it as any Dense layer."""

    @nn.compact
    def __call__(self, inputs, kernel):
        return _gathered_product(self, inputs, kernel)


class MLP(nn.Module):
    """Dense layers with an activation between them: (..., d_in) -> (..., features).

    Params: ``Dense_0 .. Dense_k``, hidden widths from ``hidden`` (see `hidden_layers`). The
    input may be a `GatheredConcat`: the first layer then never builds the concatenation.

    Two keyword-only calls split the first layer off, for `GatedMLP`'s fused first layers:
    ``mlp(first_layer_params=d_in)`` returns ``Dense_0``'s ``(kernel, bias)`` without applying it,
    and ``mlp(first_layer_output=h)`` runs the rest of the MLP from ``Dense_0``'s output ``h``.
    """

    features: int
    hidden: tuple[int, ...] = ()
    act: str = "silu"
    use_bias: bool = True
    zero_init_last: bool = False  # start the output at exactly 0 (e.g. an energy correction)

    @nn.compact
    def __call__(
        self, x=None, *, first_layer_params: int | None = None, first_layer_output=None
    ) -> jax.Array:
        widths = (*self.hidden, self.features)
        last_init = nn.initializers.zeros if self.zero_init_last else nn.initializers.lecun_normal()

        def options(i):
            return dict(
                use_bias=self.use_bias,
                name=f"Dense_{i}",
                kernel_init=last_init if i == len(widths) - 1 else nn.initializers.lecun_normal(),
            )

        if first_layer_params is not None:
            return DenseParams(widths[0], **options(0))(first_layer_params)
        fn = activation(self.act)
        x = (
            GatheredDense(widths[0], **options(0))(x)
            if first_layer_output is None
            else first_layer_output
        )
        for i, width in enumerate(widths[1:], start=1):
            x = GatheredDense(width, **options(i))(fn(x))
        return x


def _plus(x, bias):
    return x if bias is None else x + bias


class GatedMLP(nn.Module):
    """``act(norm_core(core(x))) * sigmoid(norm_gate(gate(x)))``, CHGNet's gated MLP.

    Params: ``core`` and ``gate`` (`MLP`), and with ``norm="layer"`` ``norm_core``/``norm_gate``.
    Input (..., d_in) or a `GatheredConcat`, output (..., features).

    With ``fused`` (the default) the first layers of ``core`` and ``gate`` run as one product
    with their kernels side by side, so a `GatheredConcat`'s parts are multiplied and gathered
    once for both (and a plain input meets one (d_in, 2H) matmul). Same params, same function
    up to float rounding; ``fused=False`` runs the two MLPs apart.
    """

    features: int
    hidden: tuple[int, ...] = ()
    act: str = "silu"
    norm: str | None = "layer"
    fused: bool = True

    @nn.compact
    def __call__(self, x=None, *, first_layer_output=None) -> jax.Array:
        """``first_layer_output``: instead of ``x``, the (..., 2H) outputs (bias included) of
        ``core``'s and ``gate``'s first layers side by side, computed by the caller from the
        params (e.g. per atom before a gather); the rest of the MLP runs from there."""
        if self.norm not in ("layer", None):
            raise ValueError(f"unsupported norm {self.norm!r} (use 'layer' or None)")
        core_mlp = MLP(self.features, self.hidden, self.act, name="core")
        gate_mlp = MLP(self.features, self.hidden, self.act, name="gate")
        if first_layer_output is not None:
            width = first_layer_output.shape[-1] // 2
            core = core_mlp(first_layer_output=first_layer_output[..., :width])
            gate = gate_mlp(first_layer_output=first_layer_output[..., width:])
        elif self.fused:
            d_in = (
                sum(part.shape[-1] for part, _ in x.parts)
                if isinstance(x, GatheredConcat)
                else x.shape[-1]
            )
            (core_kernel, core_bias), (gate_kernel, gate_bias) = (
                core_mlp(first_layer_params=d_in),
                gate_mlp(first_layer_params=d_in),
            )
            width = core_kernel.shape[-1]
            both = KernelProduct(2 * width, use_bias=False, name="first_layers")(
                x, jnp.concatenate([core_kernel, gate_kernel], axis=-1)
            )
            core = core_mlp(first_layer_output=_plus(both[..., :width], core_bias))
            gate = gate_mlp(first_layer_output=_plus(both[..., width:], gate_bias))
        else:
            core, gate = core_mlp(x), gate_mlp(x)
        if self.norm == "layer":
            core = layer_norm("norm_core")(core)
            gate = layer_norm("norm_gate")(gate)
        return activation(self.act)(core) * jax.nn.sigmoid(gate)
