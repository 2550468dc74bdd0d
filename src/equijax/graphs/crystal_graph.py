"""The `CrystalGraph`: CHGNet's atom graph and bond graph as two `jraph.GraphsTuple`.

Atom graph (``graph.atoms``)
    nodes    ``{"numbers": int32 (N,), "positions": float64 (N, 3) Å}``
    edges    ``{"shift": int32 (E, 3), "pair": int32 (E,)}``
    senders  int32 (E,)  the neighbour atom ``j``
    receivers int32 (E,) the centre atom ``i`` (messages flow neighbour -> centre)
    globals  ``{"cell": float64 (G, 3, 3) Å, "volume": float64 (G,) Å³,
               "n_atoms": int32 (G,), "pbc": bool (G, 3), "n_pairs": int32 (G,)}``

    One edge per *directed* neighbour pair within the atom cutoff. The vector from the centre to
    its neighbour is ``positions[senders] - positions[receivers] + shift @ cell`` (the convention
    of ``ase.neighborlist.neighbor_list``'s ``D = r_j - r_i + S·cell``). Every directed edge has a
    reverse edge (``j -> i`` with ``-shift``); the two share one undirected ``pair`` index in
    ``[0, n_pairs)``. Edges are sorted by receiver, so ``segment_sum(..., receivers,
    indices_are_sorted=True)`` is valid on a single unpadded graph.

Bond graph (``graph.bonds``)
    nodes    ``{"edge": int32 (B,), "pair": int32 (B,)}``: one node per *undirected* pair shorter
             than the bond cutoff; ``edge`` is one of its two directed atom-graph edges and
             ``pair`` its undirected index.
    edges    ``{"center": int32 (A,), "edge_ij": int32 (A,), "edge_ik": int32 (A,)}``: one edge
             per angle. ``edge_ij``/``edge_ik`` are the two directed atom-graph edges leaving the
             centre atom, both shorter than the bond cutoff.
    receivers int32 (A,) the bond node of ``edge_ij`` (the bond being updated)
    senders  int32 (A,)  the bond node of ``edge_ik``
    globals  ``None``

    Exactly CHGNet's angle rule: a centre atom with ``k`` short directed edges gives ``k (k - 1)``
    ordered angles (a bond to a periodic image of the centre itself counts as two edges).

Host-side graphs hold numpy arrays; batched/padded graphs go to jax as-is (they are pytrees).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import jraph
import numpy as np

from equijax.typing import AtomVectors, EdgeVectors, GraphCounts, GraphTensors, ItemGraphIndex


class GraphSizes(NamedTuple):
    """Array sizes of a (batched) crystal graph: the dimensions padding acts on."""

    n_node: int  # atoms
    n_edge: int  # directed atom-graph edges
    n_bond: int  # bond-graph nodes (short undirected bonds)
    n_angle: int  # bond-graph edges (angles)
    n_graph: int  # structures


class CrystalGraph(NamedTuple):
    """A crystal (or molecule, or batch of them) as CHGNet's atom graph plus bond graph.

    Both members are `jraph.GraphsTuple` with the same number of graphs; see the module
    docstring for every field, its shape and its units.
    """

    atoms: jraph.GraphsTuple
    bonds: jraph.GraphsTuple

    @property
    def sizes(self) -> GraphSizes:
        """The sizes of the arrays (padding included)."""
        return GraphSizes(
            n_node=int(np.shape(self.atoms.nodes["numbers"])[0]),
            n_edge=int(np.shape(self.atoms.senders)[0]),
            n_bond=int(np.shape(self.bonds.nodes["edge"])[0]),
            n_angle=int(np.shape(self.bonds.senders)[0]),
            n_graph=int(np.shape(self.atoms.n_node)[0]),
        )

    @property
    def num_graphs(self) -> int:
        """Number of graphs (structures), padding graphs included."""
        return int(np.shape(self.atoms.n_node)[0])


def edge_vectors(
    atoms: jraph.GraphsTuple,
    xnp=np,
    positions: AtomVectors | None = None,
    cell: GraphTensors | None = None,
) -> EdgeVectors:
    """Centre-to-neighbour vectors of every directed edge, shape (E, 3), Å.

    Works with numpy (default) or ``xnp=jax.numpy`` on batched and padded graphs: the cell of
    each edge is looked up through the graph it belongs to. ``positions`` (N, 3) and ``cell``
    (G, 3, 3) replace the graph's own (e.g. strained ones, to differentiate through them).
    """
    pos = atoms.nodes["positions"] if positions is None else positions
    cell = atoms.globals["cell"] if cell is None else cell
    n_graph, n_edge_total = atoms.n_edge.shape[0], atoms.senders.shape[0]
    if xnp is np:
        graph_of_edge = np.repeat(np.arange(n_graph), atoms.n_edge)
    else:
        graph_of_edge = graph_index(atoms.n_edge, n_edge_total)
    shift = atoms.edges["shift"].astype(pos.dtype)
    # geometry at full float32 whatever the matmul precision (TF32/bf16 would move atoms by
    # 0.01-0.05 Å in a 10 Å cell)
    exact = {} if xnp is np else {"precision": "highest"}
    return (
        pos[atoms.senders]
        - pos[atoms.receivers]
        + xnp.einsum("ei,eij->ej", shift, cell[graph_of_edge], **exact)
    )


def masked_edge_vectors(
    atoms: jraph.GraphsTuple,
    positions: AtomVectors | None = None,
    cell: GraphTensors | None = None,
) -> tuple[EdgeVectors, jax.Array]:
    """`edge_vectors` (jax) made safe on padded batches: ``(vectors (E, 3) Å, real (E,) bool)``.

    Padding edges join padding atoms (atomic number 0) and may have any length, zero included:
    they get the unit vector z, so that no norm or derivative (forces, or their parameter
    gradient in training) meets 0/0. Models should also zero their basis where ``real`` is
    False and drop those edges' messages.
    """
    vectors = edge_vectors(atoms, jnp, positions, cell)
    numbers = atoms.nodes["numbers"]
    real = (numbers[atoms.senders] > 0) & (numbers[atoms.receivers] > 0)
    real = real & (jnp.sum(vectors * vectors, axis=-1) > 0)
    vectors = jnp.where(real[:, None], vectors, jnp.array([0.0, 0.0, 1.0], vectors.dtype))
    return vectors, real


def graph_index(counts: GraphCounts, total: int) -> ItemGraphIndex:
    """Index of the graph each item belongs to, shape (total,) int32, for items (atoms, edges,
    angles) stored graph after graph: ``counts`` (G,) is each graph's number of items (a
    ``GraphsTuple``'s ``n_node`` or ``n_edge``), ``total`` the static length of the item axis.

    Items past ``sum(counts)`` (none in a padded batch, whose padding graph takes the rest) get
    the last graph's index. Works under jit: ``total`` fixes the output shape.
    """
    return jnp.repeat(jnp.arange(counts.shape[0]), counts, total_repeat_length=total)
