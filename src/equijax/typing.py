"""Shape-annotated array types for signatures (jaxtyping): the letters name the axes of a
(batched, padded) crystal graph, so ``Float[Array, "N 3"]`` reads "one 3-vector per atom".

- ``N``: atoms; ``E``: directed atom-graph edges; ``P``: undirected pairs;
- ``A``: angles (bond-graph edges); ``G``: graphs (structures).
"""

from jax import Array
from jaxtyping import Float, Int

AtomVectors = Float[Array, "N 3"]  # per-atom 3-vectors: positions Å, forces eV/Å
AtomScalars = Float[Array, "N"]  # per-atom scalars: site energies eV, magmoms μB
EdgeVectors = Float[Array, "E 3"]  # per-edge centre-to-neighbour vectors, Å
EdgeIndex = Int[Array, "E"]  # per-edge atom or pair indices
GraphScalars = Float[Array, "G"]  # per-structure scalars: energies eV, volumes Å³
GraphTensors = Float[Array, "G 3 3"]  # per-structure 3x3: cells Å, stresses GPa

__all__ = [
    "Array",
    "AtomScalars",
    "AtomVectors",
    "EdgeIndex",
    "EdgeVectors",
    "GraphScalars",
    "GraphTensors",
]
