"""Reduced-precision matmuls (TF32, bf16) for training and inference, and their CPU emulation.

``matmul_precision(name)`` is a context manager; run (and so trace and compile) a jitted function
inside it:

* ``"default"``: JAX's default; float32 dots may use TF32 on Ampere/Hopper GPUs (the JAX
  default leans toward speed), full float32 on CPU.
* ``"float32"``: true float32 (``F32_F32_F32``), like PyTorch's default
  (``torch.backends.cuda.matmul.allow_tf32 = False``).
* ``"tf32"`` / ``"bf16"``: inputs rounded to TF32 (10 mantissa bits) or bfloat16 (7 bits),
  float32 accumulation (``TF32_TF32_F32`` / ``BF16_BF16_F32``).

On a GPU the named dot algorithm becomes the default of every dot in the traced function
(`jax.default_matmul_precision`); the geometry (edge vectors, strained cells) asks for
``"highest"`` explicitly and stays float32. XLA on CPU ignores these algorithms (or rejects
TF32), so on CPU ``"tf32"`` and ``"bf16"`` are *emulated* to measure their accuracy cost: the
input and kernel of every `flax.linen.Dense` (all of CHGNet's matmuls) are rounded with
`jax.lax.reduce_precision` and multiplied in float32. The emulation reaches only ``nn.Dense``; the
e3nn layers of `EquivariantPotential` stay float32, so `check_emulation_covers` refuses it. In
the backward pass the emulation rounds the gradients the dots produce (JAX's rule for
``reduce_precision``) where the hardware rounds the cotangents they consume: a different, not a
milder, rounding.

The precision is part of jit's cache key (the emulation also sets a CPU-inert default
precision), so one jitted function traced under two precisions compiles twice, once each.
"""

from __future__ import annotations

import contextlib
import functools

import flax.linen as nn
import jax

PRECISIONS = ("default", "float32", "tf32", "bf16")
DOT_ALGORITHMS = {"float32": "F32_F32_F32", "tf32": "TF32_TF32_F32", "bf16": "BF16_BF16_F32"}
# coarse precision levels that XLA on CPU ignores: set while emulating, so that the emulated
# format is part of jit's cache key (interceptors are not)
CACHE_KEY_LEVELS = {"tf32": "tensorfloat32", "bf16": "bfloat16"}
MANTISSA_BITS = {"tf32": 10, "bf16": 7}


def round_mantissa(x: jax.Array, name: str) -> jax.Array:
    """``x`` rounded (to nearest even) to the mantissa of ``"tf32"`` or ``"bf16"``, same dtype;
    float32's 8 exponent bits are kept, so the range does not change."""
    return jax.lax.reduce_precision(x, exponent_bits=8, mantissa_bits=MANTISSA_BITS[name])


def _rounded_dot_general(
    lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None, *, name: str
):
    del precision  # the emulated product runs at full float32 after rounding
    return jax.lax.dot_general(
        round_mantissa(lhs, name),
        round_mantissa(rhs, name),
        dimension_numbers,
        precision=jax.lax.Precision.HIGHEST,
        preferred_element_type=preferred_element_type,
    )


def _dense_rounding_interceptor(name: str):
    dot = functools.partial(_rounded_dot_general, name=name)

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if (
            isinstance(module, nn.Dense)
            and context.method_name == "__call__"
            and module.dot_general is None
            and module.dot_general_cls is None
        ):
            # a fresh module instance per call in compact code: setting its dot is local to it
            object.__setattr__(module, "dot_general", dot)
        return next_fun(*args, **kwargs)

    return interceptor


def emulated(name: str, backend: str | None = None) -> bool:
    """True if ``name`` is emulated (rounded ``nn.Dense`` inputs) rather than run natively on
    ``backend`` (default: JAX's default backend): TF32/bf16 anywhere but a GPU."""
    check_precision(name)
    return name in MANTISSA_BITS and (backend or jax.default_backend()) != "gpu"


def check_precision(name: str) -> None:
    """Raise `ValueError` unless ``name`` is one of `PRECISIONS`."""
    if name not in PRECISIONS:
        raise ValueError(f"matmul precision must be one of {', '.join(PRECISIONS)}, got {name!r}")


def check_emulation_covers(dense_only: bool, name: str, model: str = "this model") -> None:
    """Raise `ValueError` if ``name`` would be emulated for a model whose matmuls are not all
    ``nn.Dense`` (``dense_only`` False: an e3nn model), rather than report a half-rounded
    model's accuracy. ``model`` names the model in the message."""
    if emulated(name) and not dense_only:
        raise ValueError(
            f"matmul precision {name!r} is emulated on {jax.default_backend()} by "
            f"rounding flax Dense layers, which does not cover {model} (it has "
            f"other matmuls); use a GPU or 'default'/'float32'"
        )


@contextlib.contextmanager
def matmul_precision(name: str):
    """Context manager: trace (and compile) inside it to run matmuls at precision ``name`` (one of
    `PRECISIONS`; see the module docstring for what each means per backend)."""
    check_precision(name)
    if name == "default":
        yield
    elif emulated(name):
        with (
            nn.intercept_methods(_dense_rounding_interceptor(name)),
            jax.default_matmul_precision(CACHE_KEY_LEVELS[name]),
        ):
            yield
    else:
        with jax.default_matmul_precision(DOT_ALGORITHMS[name]):
            yield


def with_matmul_precision(fn, name: str):
    """``fn`` (a jitted function) called inside `matmul_precision(name)`: it traces, compiles and
    runs at that precision. ``"default"`` returns ``fn`` itself. The wrapper is a plain
    function: for ``fn.lower(...)`` and friends, enter `matmul_precision` yourself."""
    check_precision(name)
    if name == "default":
        return fn

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with matmul_precision(name):
            return fn(*args, **kwargs)

    return wrapped
