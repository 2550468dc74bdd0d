"""MACE's symmetric contraction: per channel, an element-dependent polynomial of degree 1..ν of
the node's features, equivariant into each target irrep.

For one channel with features ``x`` (d = ``irreps_in.dim``; MACE's ``0e + 1o + ... + lmax`` of
one channel), output irrep ``L`` and degree ``ν``, every equivariant symmetric polynomial is
``Σ_p w_p Σ_{i1..iν} B[i1..iν, M, p] x_i1 ... x_iν`` for a basis ``B`` of the symmetric
equivariant tensors (e3nn-jax's `e3nn_jax.reduced_symmetric_tensor_product_basis`, the
independent generalized Clebsch-Gordan couplings). Two ways to evaluate it:

- ``"cg"`` (`cg_contraction`): ``B`` is folded onto the monomials ``x_i1 x_i2 ... (i1 ≤ i2 ≤
  ...)``, so one degree is one matmul of (atoms · channels, monomials) by (monomials, M · P),
  followed by the per-element weights: 816 monomials replace the 4096 index triples of a
  16-dimensional input at degree 3. It spans exactly mace-torch's couplings (mace's own basis
  may hold dependent columns; `equijax.models.mace.convert` changes basis).
- ``"gaunt_grid"`` (`gaunt_grid_contraction`, as in "The Price of Freedom"): each channel is a
  function on the sphere; degree ``ν`` is the product of ``ν`` learned per-l reweightings of it,
  taken pointwise on an exact grid and projected back. One weight per (element, ν, L, channel)
  instead of ``P``: a smaller set of couplings (`contraction_paths` says which).
"""

from __future__ import annotations

import functools
import itertools

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np

from equijax.nn.s2 import s2_grid_coefficients, s2_grid_values, s2_resolution

CONTRACTIONS = ("cg", "gaunt_grid")


@functools.cache
def monomial_indices(dim: int, degree: int) -> np.ndarray:
    """(n_monomials, degree) int: the sorted index tuples ``i1 <= ... <= i_degree`` < ``dim``."""
    if degree == 0:  # the constant monomial
        return np.zeros((1, 0), np.int32)
    return np.array(
        list(itertools.combinations_with_replacement(range(dim), degree)), np.int32
    ).reshape(-1, degree)


def monomials(x: jax.Array, degree: int) -> jax.Array:
    """``x`` (..., d) -> (..., n_monomials): the products ``x_i1 ... x_i_degree`` in
    `monomial_indices` order (gathers of x; the contraction's backward is written by hand,
    `symmetric_polynomials`, so XLA's scatter-add backward of a gather runs only in the
    second derivative, at one degree less)."""
    idx = monomial_indices(x.shape[-1], degree)
    out = x[..., idx[:, 0]]
    for k in range(1, degree):
        out = out * x[..., idx[:, k]]
    return out


def fold_to_monomials(tensor: np.ndarray, degree: int) -> np.ndarray:
    """A tensor (d, ..., d, *rest) with ``degree`` leading index axes -> (n_monomials, *rest):
    the coefficient of each monomial, i.e. the sum over the index tuples that sort to it."""
    tensor = np.asarray(tensor, np.float64)
    dim = tensor.shape[0]
    flat = tensor.reshape((dim**degree,) + tensor.shape[degree:])
    out = np.zeros((len(monomial_indices(dim, degree)),) + tensor.shape[degree:])
    np.add.at(out, _fold_targets(dim, degree), flat)
    return out


@functools.cache
def _fold_targets(dim: int, degree: int) -> np.ndarray:
    """For every index tuple (row-major over dim^degree), its monomial's index."""
    lookup = {tuple(t): n for n, t in enumerate(monomial_indices(dim, degree))}
    return np.array(
        [lookup[tuple(sorted(t))] for t in itertools.product(range(dim), repeat=degree)]
    )


def _coupling_tensors(irreps: e3nn.Irreps, ir_out: e3nn.Irrep, degree: int):
    """Every coupling of ``degree`` blocks of ``irreps`` into ``ir_out`` by a left-to-right
    chain of Clebsch-Gordan products, in a fixed order: (d, ..., d, M) tensors."""
    offsets = np.cumsum([0] + [ir.dim for _, ir in irreps])
    blocks = [ir for _, ir in irreps]
    for combo in itertools.combinations_with_replacement(range(len(blocks)), degree):
        for order in sorted(set(itertools.permutations(combo))):
            chains = [(blocks[order[0]], np.eye(blocks[order[0]].dim))]
            for k in order[1:]:
                grown = []
                for ir_left, left in chains:
                    for ir_new in sorted(ir_left * blocks[k], key=lambda ir: (ir.l, ir.p)):
                        cg = np.asarray(
                            e3nn.clebsch_gordan(ir_left.l, blocks[k].l, ir_new.l), np.float64
                        )
                        grown.append((ir_new, np.einsum("...a,abc->...bc", left, cg)))
                chains = grown
            for ir_final, tensor in chains:
                if ir_final != ir_out:
                    continue
                full = np.zeros((offsets[-1],) * degree + (ir_out.dim,))
                index = tuple(slice(offsets[b], offsets[b + 1]) for b in order)
                full[index] = tensor
                yield full


@functools.cache
def _basis(irreps_in: str, ir_out: str, degree: int) -> np.ndarray:
    """(n_monomials, M, P) float64: an orthonormal basis of the degree-``degree`` equivariant
    polynomials into ``ir_out`` on the monomials, the same in every process.

    Built from Clebsch-Gordan chains in a fixed order, folded onto the monomials (which
    symmetrises them) and orthonormalised greedily, dropping dependent ones: it spans what
    e3nn-jax's `e3nn_jax.reduced_symmetric_tensor_product_basis` spans (the same counts), but is
    orthonormal in the monomial coordinates the contraction computes in, and depends only on
    the Clebsch-Gordan coefficients.
    """
    irreps, ir = e3nn.Irreps(irreps_in), e3nn.Irrep(ir_out)
    dim = irreps.dim
    targets = _fold_targets(dim, degree)
    n_mono = len(monomial_indices(dim, degree))
    kept: list[np.ndarray] = []
    for tensor in _coupling_tensors(irreps, ir, degree):
        folded = np.zeros((n_mono, ir.dim))
        np.add.at(folded, targets, tensor.reshape(-1, ir.dim))
        v = folded.reshape(-1)
        norm = np.linalg.norm(v)
        if norm < 1e-12:
            continue
        for q in kept:
            v = v - (q @ v) * q
        for q in kept:  # twice is enough (Kahan-Parlett)
            v = v - (q @ v) * q
        if np.linalg.norm(v) > 1e-8 * norm:
            kept.append(v / np.linalg.norm(v))
    if not kept:
        return np.zeros((n_mono, ir.dim, 0))
    return np.stack(kept, axis=-1).reshape(n_mono, ir.dim, len(kept))


def symmetric_basis(irreps_in, ir_out, degree: int) -> np.ndarray:
    """(n_monomials, ir_out.dim, P) float64: a basis of the degree-``degree`` equivariant
    polynomials of one channel of ``irreps_in`` into ``ir_out``, on the monomials (P may be 0)."""
    return _basis(str(e3nn.Irreps(irreps_in)), str(e3nn.Irrep(ir_out)), degree)


def num_couplings(irreps_in, ir_out, degree: int) -> int:
    """P: the number of independent degree-``degree`` couplings of ``irreps_in`` into
    ``ir_out`` (mace-torch's reduced count)."""
    return symmetric_basis(irreps_in, ir_out, degree).shape[-1]


@functools.cache
def _coefficients(irreps_in: str, outputs: tuple[str, ...], degree: int) -> np.ndarray:
    """(n_monomials, Σ M·P) float64: the degree-``degree`` bases of every output irrep side by
    side (`symmetric_basis` flattened to M·P columns each)."""
    blocks = [symmetric_basis(irreps_in, ir, degree) for ir in outputs]
    return np.concatenate([b.reshape(b.shape[0], -1) for b in blocks], axis=1)


@functools.cache
def _derivative(irreps_in: str, outputs: tuple[str, ...], degree: int) -> np.ndarray:
    """(Σ M·P, n_monomials(degree - 1) · d): the coefficients of ∂/∂x_a of `_coefficients`'
    polynomials on the degree - 1 monomials (x^α -> α_a x^(α - e_a))."""
    coeffs = _coefficients(irreps_in, outputs, degree)
    dim = e3nn.Irreps(irreps_in).dim
    lower = {tuple(t): n for n, t in enumerate(monomial_indices(dim, degree - 1))}
    out = np.zeros((len(lower), dim, coeffs.shape[1]))
    for m, alpha in enumerate(monomial_indices(dim, degree)):
        for a in set(alpha.tolist()):
            reduced = list(alpha)
            reduced.remove(a)
            out[lower[tuple(reduced)], a] += list(alpha).count(a) * coeffs[m]
    return out.reshape(-1, coeffs.shape[1]).T


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def symmetric_polynomials(x: jax.Array, key: tuple) -> jax.Array:
    """Φ = monomials(x, ν) @ coefficients: (R, d) -> (R, Σ M·P), ``key = (irreps_in, outputs,
    ν)``. Its backward is one matmul of the cotangent with the derivative's coefficients and a
    product with the degree ν - 1 monomials, itself differentiable (forces in training
    differentiate twice): XLA's own backward of the monomials is pads and scatters, 5x and 50x
    the forward here."""
    coeffs = _coefficients(*key)
    return monomials(x, key[2]) @ jnp.asarray(coeffs, x.dtype)


def _polynomials_fwd(x, key):
    return symmetric_polynomials(x, key), x


def _polynomials_bwd(key, x, cotangent):
    degree, dim = key[2], x.shape[-1]
    h = cotangent @ jnp.asarray(_derivative(*key), cotangent.dtype)
    if degree == 1:
        return (h,)
    h = h.reshape(h.shape[:-1] + (-1, dim))
    return (jnp.einsum("rmd,rm->rd", h, monomials(x, degree - 1)),)


symmetric_polynomials.defvjp(_polynomials_fwd, _polynomials_bwd)


def cg_contraction(
    x: jax.Array, weights: dict, irreps_in, irreps_out, correlation: int
) -> e3nn.IrrepsArray:
    """The Clebsch-Gordan symmetric contraction.

    Args:
        x: (N, C, d) node features, one row of ``irreps_in`` per channel.
        weights: ``{(str(ir_out), ν): (N, P, C)}`` each node's (element's) weights.
        irreps_in: one channel's irreps (d = its dim).
        irreps_out: ``C x ir`` blocks, each with C channels.
        correlation: the largest degree ν.

    Returns: (N, irreps_out) in e3nn's mul-major layout.
    """
    n, c, d = x.shape
    irreps_in, irreps_out = str(e3nn.Irreps(irreps_in)), e3nn.Irreps(irreps_out)
    totals = {ir: jnp.zeros((n, c, ir.dim), x.dtype) for _, ir in irreps_out}
    for nu in range(1, correlation + 1):
        outputs = tuple(str(ir) for _, ir in irreps_out if num_couplings(irreps_in, ir, nu) > 0)
        if not outputs:
            continue
        phi = symmetric_polynomials(x.reshape(n * c, d), (irreps_in, outputs, nu))
        offset = 0
        for name in outputs:
            ir, p = e3nn.Irrep(name), num_couplings(irreps_in, name, nu)
            block = phi[:, offset : offset + ir.dim * p].reshape(n, c, ir.dim, p)
            offset += ir.dim * p
            w = weights[(name, nu)].astype(x.dtype)  # (N, P, C)
            totals[ir] = totals[ir] + jnp.einsum("ncmp,npc->ncm", block, w)
    blocks = [totals[ir].reshape(n, mul * ir.dim) for mul, ir in irreps_out]
    return e3nn.IrrepsArray(irreps_out, jnp.concatenate(blocks, axis=-1))


def gaunt_lmax(irreps_in) -> int:
    """The largest l of ``irreps_in``, which must be natural-parity harmonics (0e, 1o, 2e, ...)
    for the sphere-grid contraction."""
    irreps = e3nn.Irreps(irreps_in)
    if any(ir.p != (-1) ** ir.l for _, ir in irreps):
        raise ValueError(
            f"the gaunt_grid contraction needs natural-parity irreps (0e, 1o, 2e, ...), got "
            f"{irreps}; use contraction 'cg'"
        )
    return irreps.lmax


def gaunt_grid_contraction(
    x: jax.Array,
    input_weights: dict,
    output_weights: dict,
    irreps_in,
    irreps_out,
    correlation: int,
) -> e3nn.IrrepsArray:
    """The sphere-grid ("Price of Freedom") symmetric contraction.

    Args:
        x: (N, C, d) node features, one row of natural-parity ``irreps_in`` per channel.
        input_weights: ``{ν: (ν, lmax_in + 1, C)}``: factor ``k`` of degree ν is the channel's
            function with each l reweighted.
        output_weights: ``{(str(ir_out), ν): (N, C)}`` each node's (element's) weight.
        irreps_in: one channel's irreps, as in `cg_contraction`.
        irreps_out: ``C x ir`` blocks; those of the wrong parity for l (e.g. 1e) get zeros.
        correlation: the largest degree ν.

    Returns: (N, irreps_out).
    """
    lmax_in = gaunt_lmax(irreps_in)
    irreps_out = e3nn.Irreps(irreps_out)
    lmax_out = irreps_out.lmax
    n, c, _ = x.shape
    features = e3nn.IrrepsArray(e3nn.Irreps(irreps_in), x)
    offsets = np.cumsum([0] + [ir.dim for _, ir in e3nn.Irreps(irreps_in)])
    by_l = {ir.l: slice(offsets[i], offsets[i + 1]) for i, (_, ir) in enumerate(features.irreps)}
    totals = {ir: jnp.zeros((n, c, ir.dim), x.dtype) for _, ir in irreps_out}
    for nu in range(1, correlation + 1):
        resolution = s2_resolution(lmax_in, lmax_out, nu)
        product = None
        for k in range(nu):
            scale = input_weights[nu][k].astype(x.dtype)  # (lmax+1, C)
            scaled = jnp.concatenate(
                [x[..., by_l[l]] * scale[l][:, None] for l in sorted(by_l)], axis=-1
            )
            grid = s2_grid_values(e3nn.IrrepsArray(features.irreps, scaled), lmax_out, resolution)
            product = grid if product is None else product * grid
        coeffs = s2_grid_coefficients(product, lmax_in, lmax_out, resolution)
        for _, ir in irreps_out:
            if ir.p != (-1) ** ir.l:
                continue
            block = coeffs.filter([ir]).array.reshape(n, c, ir.dim)
            totals[ir] = totals[ir] + block * output_weights[(str(ir), nu)][..., None]
    blocks = [totals[ir].reshape(n, mul * ir.dim) for mul, ir in irreps_out]
    return e3nn.IrrepsArray(irreps_out, jnp.concatenate(blocks, axis=-1))


def contraction_paths(kind: str, irreps_in, irreps_out, correlation: int) -> list[dict]:
    """Per (output irrep, degree ν): ``{"ir_out", "nu", "couplings", "realized"}``: the
    independent CG couplings of that degree, and how many free couplings ``kind`` realizes (all
    of them for ``cg``; at most one learned combination for ``gaunt_grid``)."""
    if kind not in CONTRACTIONS:
        raise ValueError(f"unknown contraction {kind!r}; expected one of {CONTRACTIONS}")
    rows = []
    for _, ir in e3nn.Irreps(irreps_out):
        for nu in range(1, correlation + 1):
            p = num_couplings(irreps_in, ir, nu)
            if kind == "cg":
                realized = p
            else:
                realized = min(p, 1) if ir.p == (-1) ** ir.l else 0
            rows.append({"ir_out": str(ir), "nu": nu, "couplings": p, "realized": realized})
    return rows


def contraction_num_weights(
    kind: str, irreps_in, irreps_out, correlation: int, num_elements: int
) -> int:
    """Trainable weights of the contraction: per element and channel, one per realized coupling
    (plus the shared per-l input weights of ``gaunt_grid``)."""
    irreps_out = e3nn.Irreps(irreps_out)
    channels = irreps_out[0].mul
    rows = contraction_paths(kind, irreps_in, irreps_out, correlation)
    total = sum(r["realized"] for r in rows) * num_elements * channels
    if kind == "gaunt_grid":
        lmax = e3nn.Irreps(irreps_in).lmax
        total += sum(nu * (lmax + 1) * channels for nu in range(1, correlation + 1))
    return total
