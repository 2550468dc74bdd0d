"""Equivariant tensor products behind one interface, each exact and saying which paths it realizes.

- `clebsch_gordan`: every coupling; same output as `e3nn.tensor_product`.
- `gaunt_s2grid`: product of the two spherical functions on the smallest exact grid.
- `gaunt_fourier`: the same function through the 2D Fourier basis.
- `vector_gaunt`: Gaunt plus the odd (cross-product-like) couplings via vector harmonics.
- `TensorProduct`: the flax.linen module with learned weights over any kind.
- `paths`, `num_weights`, `grid_resolution`: the expressivity report and the exact grid chooser.

See docs/tensor_products.md.
"""

from equijax.nn.tp.cg import clebsch_gordan
from equijax.nn.tp.gaunt_fourier import gaunt_fourier
from equijax.nn.tp.gaunt_grid import gaunt_s2grid
from equijax.nn.tp.module import TensorProduct, tensor_product
from equijax.nn.tp.paths import KINDS, CouplingPath, num_weights, paths
from equijax.nn.tp.s2grid import grid_resolution, resolution_for_degree
from equijax.nn.tp.vector_gaunt import vector_gaunt

__all__ = [
    "KINDS",
    "CouplingPath",
    "TensorProduct",
    "clebsch_gordan",
    "gaunt_fourier",
    "gaunt_s2grid",
    "grid_resolution",
    "num_weights",
    "paths",
    "resolution_for_degree",
    "tensor_product",
    "vector_gaunt",
]
