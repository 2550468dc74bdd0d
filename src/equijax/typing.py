"""Shape-annotated array types for signatures (jaxtyping): the letters name the axes of a
(batched, padded) crystal graph, so `AtomVectors` (``Float[Array, "N 3"]``) reads "one 3-vector
per atom".

- ``N``: atoms; ``E``: directed atom-graph edges; ``P``: undirected pairs;
- ``A``: angles (bond-graph edges); ``G``: graphs (structures); ``T``: items of any kind.

Named aliases rather than inline strings, so annotations stay valid under
``from __future__ import annotations`` and the linters.
"""

from jax import Array
from jaxtyping import Float, Int

AtomVectors = Float[Array, "N 3"]  # per-atom 3-vectors: positions Å, forces eV/Å
AtomScalars = Float[Array, "N"]  # per-atom scalars: site energies eV, magmoms μB
EdgeVectors = Float[Array, "E 3"]  # per-edge centre-to-neighbour vectors, Å
EdgeScalars = Float[Array, "E"]  # per-edge scalars: lengths Å
EdgeIndex = Int[Array, "E"]  # per-edge atom or pair indices
PairScalars = Float[Array, "P"]  # per-undirected-pair scalars: lengths Å
GraphCounts = Int[Array, "G"]  # per-structure counts: atoms, edges or angles
GraphScalars = Float[Array, "G"]  # per-structure scalars: energies eV, volumes Å³
GraphTensors = Float[Array, "G 3 3"]  # per-structure 3x3: cells Å, stresses GPa
ItemGraphIndex = Int[Array, "T"]  # the structure each atom/edge/angle belongs to

__all__ = [
    "Array",
    "AtomScalars",
    "AtomVectors",
    "EdgeIndex",
    "EdgeScalars",
    "EdgeVectors",
    "GraphCounts",
    "GraphScalars",
    "GraphTensors",
    "ItemGraphIndex",
    "PairScalars",
]
