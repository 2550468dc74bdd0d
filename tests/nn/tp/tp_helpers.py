"""Helpers for the tests of `equijax.nn.tp`: random inputs, O(3) representation matrices.

Imported by the test modules of this folder (pytest puts the folder on sys.path; tests/ has no
package ``__init__``). Nothing here uses `equijax.nn.tp`, so it stays an independent reference:
the Wigner matrices are exp(ω · X_l) with e3nn's real-basis generators `e3nn.generators(l)`
(numpy and scipy only, so no jit compile), and parity acts as p^k on an irrep of parity p.
"""

from __future__ import annotations

import functools

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg


def irreps_array(
    rng: np.random.Generator, irreps, lead: tuple = (), dtype=None
) -> e3nn.IrrepsArray:
    """Standard-normal `IrrepsArray` of shape lead + (dim,) (float32 unless x64 is on / dtype)."""
    irreps = e3nn.Irreps(irreps)
    if dtype is None:
        dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    return e3nn.IrrepsArray(irreps, jnp.asarray(rng.normal(size=lead + (irreps.dim,)), dtype))


@functools.cache
def _generators(l: int) -> np.ndarray:
    return np.asarray(e3nn.generators(l), np.float64)


def wigner_d(l: int, omega) -> np.ndarray:
    """Real Wigner matrix D_l of the rotation exp(ω · X) in e3nn's basis, (2l+1, 2l+1), float64."""
    return scipy.linalg.expm(np.einsum("i,ijk->jk", np.asarray(omega, np.float64), _generators(l)))


def rotation_matrix(omega) -> np.ndarray:
    """The 3x3 rotation acting on vectors (e3nn's 1o basis is x, y, z): D_1."""
    return wigner_d(1, omega)


def representation(irreps, omega, k: int = 0) -> np.ndarray:
    """Block-diagonal matrix of the O(3) element (rotation exp(ω · X)) · inversion^k on ``irreps``."""
    blocks = []
    for mul, ir in e3nn.Irreps(irreps):
        d = wigner_d(ir.l, omega) * float(ir.p) ** k
        blocks += [d] * mul
    return scipy.linalg.block_diag(*blocks) if blocks else np.zeros((0, 0))


def apply_representation(array, irreps, omega, k: int = 0) -> np.ndarray:
    """D(g) applied to the last axis of ``array`` (float64 numpy), one (mul, 2l+1) block at a time."""
    array = np.asarray(array, np.float64)
    out = np.empty_like(array)
    cache = {}
    for (mul, ir), sl in zip(e3nn.Irreps(irreps), e3nn.Irreps(irreps).slices()):
        if ir.l not in cache:
            cache[ir.l] = wigner_d(ir.l, omega)
        d = cache[ir.l] * float(ir.p) ** k
        chunk = array[..., sl].reshape(array.shape[:-1] + (mul, ir.dim))
        out[..., sl] = (chunk @ d.T).reshape(array.shape[:-1] + (mul * ir.dim,))
    return out


def transform(x: e3nn.IrrepsArray, omega, k: int = 0) -> e3nn.IrrepsArray:
    """D(g) x for g = rotation(ω) · inversion^k (numpy, dtype kept)."""
    return e3nn.IrrepsArray(
        x.irreps, jnp.asarray(apply_representation(x.array, x.irreps, omega, k), x.dtype)
    )


def rel_err(got, want) -> float:
    """max |got - want| / max |want| (arrays or IrrepsArrays)."""
    got = np.asarray(got.array if isinstance(got, e3nn.IrrepsArray) else got, np.float64)
    want = np.asarray(want.array if isinstance(want, e3nn.IrrepsArray) else want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300))


def blocks(x: e3nn.IrrepsArray) -> dict:
    """{Irrep: numpy array (..., mul, 2l+1)} of an IrrepsArray, repeated irreps merged (numpy only:
    eager jax slicing would compile one program per slice)."""
    array = np.asarray(x.array, np.float64)
    out = {}
    for (mul, ir), sl in zip(x.irreps, x.irreps.slices()):
        chunk = array[..., sl].reshape(array.shape[:-1] + (mul, ir.dim))
        out[ir] = chunk if ir not in out else np.concatenate([out[ir], chunk], axis=-2)
    return out


def parity_class(ir: e3nn.Irrep) -> int:
    """+1 for 0e, 1o, 2e, ... (p = (-1)^l), -1 for 0o, 1e, 2o, ... (e3nn's p_val of a signal)."""
    return ir.p * (-1) ** ir.l


def triangle_paths(ir1, ir2, odd_allowed: bool = True) -> list:
    """Independent enumeration: ir3 with |l1-l2| <= l3 <= l1+l2, p3 = p1 p2 (and l1+l2+l3 even
    unless ``odd_allowed``), ascending l3."""
    ir1, ir2 = e3nn.Irrep(ir1), e3nn.Irrep(ir2)
    out = []
    for l3 in range(abs(ir1.l - ir2.l), ir1.l + ir2.l + 1):
        if not odd_allowed and (ir1.l + ir2.l + l3) % 2:
            continue
        out.append(e3nn.Irrep(l3, ir1.p * ir2.p))
    return out
