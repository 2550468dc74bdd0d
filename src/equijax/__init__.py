"""equijax: E(3)-equivariant interatomic potentials in JAX."""

__version__ = "0.1.0"
