"""Layers any model may use: radial bases and cutoffs, spline radials, MLPs and gated MLPs,
CHGNet's convolutions, readouts, direct force/stress heads, learned pair and three-body energies,
spherical-grid layers and tensor products (`equijax.nn.tp`). Pure functions first, thin
``flax.linen`` modules over them."""

from equijax.nn import tp
from equijax.nn.angle_energy import angle_energy, chebyshev
from equijax.nn.chgnet import AngleUpdate, AtomConv, BondConv
from equijax.nn.direct_heads import DirectHeads, scale_gradient
from equijax.nn.mlp import MLP, GatedMLP, activation
from equijax.nn.pair_energy import pair_energy
from equijax.nn.precision import PRECISIONS, matmul_precision, with_matmul_precision
from equijax.nn.radial import (
    FourierAngle,
    RadialBessel,
    angle_between,
    bessel_basis,
    fourier_basis,
    polynomial_cutoff,
)
from equijax.nn.readout import MAX_ELEMENTS, AtomRef, SiteEnergies, SiteMagmoms
from equijax.nn.remat import remat_call
from equijax.nn.s2 import S2MLP, s2_activation
from equijax.nn.spline_radial import SplineRadial, bspline_basis
from equijax.nn.tp import TensorProduct

__all__ = [
    "MAX_ELEMENTS",
    "MLP",
    "PRECISIONS",
    "S2MLP",
    "AngleUpdate",
    "AtomConv",
    "AtomRef",
    "BondConv",
    "DirectHeads",
    "FourierAngle",
    "GatedMLP",
    "RadialBessel",
    "SiteEnergies",
    "SiteMagmoms",
    "SplineRadial",
    "TensorProduct",
    "activation",
    "angle_between",
    "angle_energy",
    "bessel_basis",
    "bspline_basis",
    "chebyshev",
    "fourier_basis",
    "matmul_precision",
    "pair_energy",
    "polynomial_cutoff",
    "remat_call",
    "s2_activation",
    "scale_gradient",
    "tp",
    "with_matmul_precision",
]
