"""Direct force and stress readouts (FastCHGNet-style): no derivative of the energy is taken, so
training needs no second derivatives.

Each undirected atom pair p = {i, j} gets three invariant weights from an MLP of symmetric pair
features, and with r̂ the centre-to-neighbour unit vector of a directed edge:

    F_i = Σ_{edges i→j} w_f(p) r̂_ij                                 (eV/Å)
    σ_g = (160.2 / V_g) Σ_{pairs p in g} ((w_1(p) + w_f(p) r_p) r̂⊗r̂ + w_0(p) I)   (GPa)

with w = MLP(features) / ``norm`` (CHGNet's three-body stress term, `angle_stress`, divides its
angle weights by the same ``norm``). A plain sum over ~40 neighbours per atom and the factor
160.2 / V make one unit of raw pair weight worth ~270 GPa of stress on dense crystals, so each
optimizer step of the MLP's last layer moves the stress by tens of GPa; ``norm`` (e.g. the mean
number of neighbours per atom, as MACE's ``avg_num_neighbors``) brings a unit weight back to the
scale of the labels. ``norm=1`` gives the plain sums.

The ``w_f r_p r̂⊗r̂`` term (``stress="virial"``, ``"virial_detached"`` or ``"virial_only"``; off
by default) is the virial of the pair forces: for a pair potential E = Σ_p φ(r_p), w_f = φ'(r_p)
gives exactly its forces and its stress (1/V) ∂E/∂ε. With ``"virial"`` the stress labels also train w_f through
the term; with ``"virial_detached"`` the term is under `jax.lax.stop_gradient` (stress labels
still reach w_f through the MLP's shared hidden layers and the trunk, as with
``"independent"``). ``"independent"`` leaves the term out. ``"virial_only"`` makes the stress the
virial alone (w₁ and w₀ are computed but unused; CHGNet's ``direct_angle_stress`` term, if on,
is still added): with CHGNet's three-body forces
(`angle_edge_gradient`, whose virial joins it) this is exact for any energy of pair distances and
bond-graph angles, CHGNet's own included, so force and stress labels train the same weights.

Rotating the structure rotates r̂, so F → R F and σ → R σ Rᵀ exactly; σ is symmetric by
construction; and because w_f is the same for both directions of a pair, the pair's contributions
to i and j cancel: Σ_i F_i = 0 (Newton's third law) for every structure.
"""

from __future__ import annotations

import math
import numbers

import flax.linen as nn
import jax
import jax.numpy as jnp

from equijax.nn.mlp import MLP
from equijax.units import EV_PER_A3_TO_GPA

# model configs' ``direct_stress`` and `DirectHeads.stress`: how the stress uses the force weights
DIRECT_STRESS = ("independent", "virial", "virial_detached", "virial_only")


def scale_gradient(x: jax.Array, factor: float) -> jax.Array:
    """``x`` unchanged in the forward pass (exactly: ``x - stop_gradient(x)`` is 0); its
    gradient multiplied by ``factor``, so a head reading trunk features trains the trunk with a
    chosen weight. Written with `jax.lax.stop_gradient` rather than a custom VJP so that it also
    holds inside an inner `jax.grad` (``train.conservative_every`` steps) and under `jax.jvp`."""
    frozen = jax.lax.stop_gradient(x)
    return frozen + factor * (x - frozen)


def _finite_real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def valid_direct_norm(norm) -> bool:
    """Whether ``norm`` can divide the heads' weights (`DirectHeads.norm`): finite and > 0."""
    return _finite_real(norm) and norm > 0


def valid_trunk_grad(factor) -> bool:
    """Whether ``factor`` can scale the heads' gradient into the trunk (`scale_gradient`):
    finite and >= 0."""
    return _finite_real(factor) and factor >= 0


def check_direct_norm(norm: float) -> None:
    """Raise `ValueError` unless ``norm`` (`DirectHeads.norm`) is a finite number > 0."""
    if not valid_direct_norm(norm):
        raise ValueError(f"the direct heads' norm must be a finite number > 0, got {norm!r}")


def symmetric_pair_features(
    atom_features: jax.Array,
    senders: jax.Array,
    receivers: jax.Array,
    pair: jax.Array,
    n_pairs: int,
) -> jax.Array:
    """(P, 2F) features of each undirected pair that do not depend on its orientation:
    ``a_i + a_j`` and ``a_i * a_j`` from (N, F) atom features (each pair has two directed edges)."""
    total = jax.ops.segment_sum(atom_features[senders], pair, n_pairs)
    product = (
        jax.ops.segment_sum(atom_features[senders] * atom_features[receivers], pair, n_pairs) / 2.0
    )
    return jnp.concatenate([total, product], axis=-1)


def direct_forces(
    pair_weights: jax.Array,
    pair: jax.Array,
    unit: jax.Array,
    receivers: jax.Array,
    n_atoms: int,
) -> jax.Array:
    """(N, 3) forces ``F_i = Σ_e w(pair(e)) r̂_e`` over the edges e centred on atom i.

    ``pair_weights`` (P,), ``pair`` (E,) pair index of each edge, ``unit`` (E, 3) centre-to-
    neighbour unit vectors, ``receivers`` (E,) the centre atom of each edge."""
    return jax.ops.segment_sum(pair_weights[pair][:, None] * unit, receivers, n_atoms)


def direct_stress(
    w_outer: jax.Array,
    w_iso: jax.Array,
    pair: jax.Array,
    unit: jax.Array,
    graph_of_edge: jax.Array,
    volume: jax.Array,
    n_graphs: int,
    force_weights: jax.Array | None = None,
    lengths: jax.Array | None = None,
) -> jax.Array:
    """(G, 3, 3) symmetric stress in GPa, ``(1/V) Σ_pairs (w₁ r̂⊗r̂ + w₀ I)``; zero for graphs
    without a 3D cell (``volume`` 0). Each pair's two directed edges share r̂⊗r̂, so the sum over
    edges is halved.

    With ``force_weights`` (P,) eV/Å (the `direct_forces` weights) and ``lengths`` (E,) Å, the
    virial of those pair forces, ``(1/V) Σ_pairs w_f r r̂⊗r̂``, is added: the exact stress of a
    pair potential whose forces they are."""
    if (force_weights is None) != (lengths is None):
        raise ValueError("the virial term needs both force_weights and lengths")
    edge_outer = w_outer[pair]
    if force_weights is not None:
        edge_outer = edge_outer + force_weights[pair] * lengths
    outer = unit[:, :, None] * unit[:, None, :]
    per_edge = (
        edge_outer[:, None, None] * outer
        + w_iso[pair][:, None, None] * jnp.eye(3, dtype=unit.dtype)
    ) / 2.0
    total = jax.ops.segment_sum(per_edge, graph_of_edge, n_graphs)
    return total * gpa_per_volume(volume)[:, None, None]


def angle_stress(
    angle_weights: jax.Array,
    unit_ij: jax.Array,
    unit_ik: jax.Array,
    graph_of_angle: jax.Array,
    volume: jax.Array,
    n_graphs: int,
) -> jax.Array:
    """(G, 3, 3) symmetric three-body stress in GPa, ``(160.2/V) Σ_angles w_a (r̂_ij⊗r̂_ik +
    r̂_ik⊗r̂_ij) / 2`` over the angles (bond pairs j-i-k sharing centre i) of each graph.

    ``angle_weights`` (A,) eV, ``unit_ij``/``unit_ik`` (A, 3) the two bonds' centre-to-neighbour
    unit vectors, ``graph_of_angle`` (A,), ``volume`` (G,) Å³ (0: no cell, zero stress). The
    off-axis (r̂_ij⊗r̂_ik) products are what a many-body stress has and a sum of r̂⊗r̂ pair terms
    lacks: the gradient of an angle term is not along either bond."""
    outer = unit_ij[:, :, None] * unit_ik[:, None, :]
    per_angle = angle_weights[:, None, None] * (outer + jnp.swapaxes(outer, 1, 2)) / 2.0
    total = jax.ops.segment_sum(per_angle, graph_of_angle, n_graphs)
    return total * gpa_per_volume(volume)[:, None, None]


def angle_edge_gradient(
    angle_weights: jax.Array,
    unit_ij: jax.Array,
    unit_ik: jax.Array,
    length_ij: jax.Array,
    length_ik: jax.Array,
    edge_ij: jax.Array,
    edge_ik: jax.Array,
    n_edges: int,
) -> jax.Array:
    """(E, 3) edge gradients eV/Å of three-body force terms with angle weights c (A,) eV: the
    non-central part of the gradient of an angle energy φ(cos θ_ijk), with c = ∂φ/∂cos θ.

    Each angle j-i-k (centre i, directed edges ``edge_ij``/``edge_ik`` of the atom graph, unit
    vectors ``unit_ij``/``unit_ik`` (A, 3), lengths ``length_ij``/``length_ik`` (A,) Å) gives
    its edges g_ij = (c / r_ij) r̂_ik and g_ik = (c / r_ik) r̂_ij. Their forces
    (`edge_gradient_forces`) have Σ_i F_i = 0; their virial (1/V) Σ r⊗g =
    (c / V)(r̂_ij⊗r̂_ik + r̂_ik⊗r̂_ij) is `angle_stress` with weights 2c. The central rest of
    φ's gradient, −c cos θ / r along each bond, is a pair term that `direct_forces` can carry."""
    return angle_gradients_on_edges(
        (angle_weights / length_ij)[:, None] * unit_ik,
        (angle_weights / length_ik)[:, None] * unit_ij,
        edge_ij,
        edge_ik,
        n_edges,
    )


def angle_gradients_on_edges(
    grad_ij: jax.Array,
    grad_ik: jax.Array,
    edge_ij: jax.Array,
    edge_ik: jax.Array,
    n_edges: int,
) -> jax.Array:
    """(E, 3) edge gradients: each angle's gradients with respect to its two bonds, ``grad_ij``
    and ``grad_ik`` (A, 3), summed onto those bonds' directed edges ``edge_ij``/``edge_ik``."""
    return jax.ops.segment_sum(grad_ij, edge_ij, n_edges) + jax.ops.segment_sum(
        grad_ik, edge_ik, n_edges
    )


def edge_gradient_forces(
    edge_gradient: jax.Array, senders: jax.Array, receivers: jax.Array, n_atoms: int
) -> jax.Array:
    """(N, 3) forces eV/Å of per-edge energy gradients ``g_e = ∂E/∂r_e`` (E, 3) eV/Å, r_e the
    vector from the edge's centre (``receivers``) to its neighbour (``senders``): the centre gets
    +g_e and the neighbour −g_e, so the net force is zero."""
    return jax.ops.segment_sum(edge_gradient, receivers, n_atoms) - jax.ops.segment_sum(
        edge_gradient, senders, n_atoms
    )


def edge_gradient_stress(
    edge_gradient: jax.Array,
    vectors: jax.Array,
    graph_of_edge: jax.Array,
    volume: jax.Array,
    n_graphs: int,
) -> jax.Array:
    """(G, 3, 3) stress GPa ``(160.2 / V) Σ_e sym(r_e ⊗ g_e)``: the virial (1/V) ∂E/∂ε of an
    energy of edge vectors with gradients ``edge_gradient`` (E, 3) eV/Å at ``vectors`` (E, 3) Å;
    zero for graphs without a 3D cell (``volume`` (G,) Å³ of 0). The sum is symmetric already
    for a rotation-invariant energy; the symmetrisation only removes rounding."""
    outer = vectors[:, :, None] * edge_gradient[:, None, :]
    total = jax.ops.segment_sum((outer + jnp.swapaxes(outer, 1, 2)) / 2.0, graph_of_edge, n_graphs)
    return total * gpa_per_volume(volume)[:, None, None]


def gpa_per_volume(volume: jax.Array) -> jax.Array:
    """160.2 / V for graphs with a 3D cell (volume > 0), 0 otherwise; (G,)."""
    has_cell = volume > 0
    return jnp.where(has_cell, EV_PER_A3_TO_GPA / jnp.where(has_cell, volume, 1.0), 0.0)


class DirectHeads(nn.Module):
    """Direct forces (N, 3) eV/Å and stress (G, 3, 3) GPa from invariant features.

    Call with ``pair_features`` (P, Fp) (invariant features of undirected pairs, e.g. CHGNet's
    bond features or a radial basis), ``atom_features`` (N, Fa) invariant, the atom graph's
    ``senders``/``receivers``/``pair`` (E,), ``unit`` (E, 3) centre-to-neighbour unit vectors,
    ``graph_of_edge`` (E,), ``volume`` (G,) Å³ and ``lengths`` (E,) Å edge lengths (needed for
    the virial). ``hidden``: the MLP's hidden widths. ``stress``: one of `DIRECT_STRESS`, whether
    and how the pair forces' virial enters the stress (see the module docstring). ``norm`` (> 0):
    the pair weights are the MLP's outputs divided by it (see the module docstring). The last
    layer starts at zero, so an untrained head predicts zero forces and stress.
    """

    hidden: tuple[int, ...] = (64,)
    activation: str = "silu"
    stress: str = "independent"
    norm: float = 1.0

    @nn.compact
    def __call__(
        self,
        pair_features,
        atom_features,
        senders,
        receivers,
        pair,
        unit,
        graph_of_edge,
        volume,
        lengths=None,
    ):
        if self.stress not in DIRECT_STRESS:
            raise ValueError(
                f"DirectHeads.stress must be one of {DIRECT_STRESS}, got {self.stress!r}"
            )
        if self.stress != "independent" and lengths is None:
            raise ValueError(f"DirectHeads(stress={self.stress!r}) needs the edge lengths")
        check_direct_norm(self.norm)
        n_pairs, n_atoms, n_graphs = pair_features.shape[0], atom_features.shape[0], volume.shape[0]
        features = jnp.concatenate(
            [
                pair_features,
                symmetric_pair_features(atom_features, senders, receivers, pair, n_pairs),
            ],
            axis=-1,
        )
        weights = (
            MLP(3, hidden=self.hidden, act=self.activation, zero_init_last=True, name="pair_mlp")(
                features
            )
            / self.norm
        )
        forces = direct_forces(weights[:, 0], pair, unit, receivers, n_atoms)
        force_weights = None
        if self.stress != "independent":
            force_weights = weights[:, 0]
            if self.stress == "virial_detached":
                force_weights = jax.lax.stop_gradient(force_weights)
        w_outer, w_iso = weights[:, 1], weights[:, 2]
        if self.stress == "virial_only":
            w_outer = w_iso = jnp.zeros_like(w_outer)
        stress = direct_stress(
            w_outer,
            w_iso,
            pair,
            unit,
            graph_of_edge,
            volume,
            n_graphs,
            force_weights,
            None if force_weights is None else lengths,
        )
        return forces, stress
