"""ASE calculators."""

from equijax.calculators.ase_calculator import EquijaxCalculator

__all__ = ["EquijaxCalculator"]
