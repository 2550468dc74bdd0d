"""Unit conversions shared by every layer (equijax's units: eV, Å, eV/Å, GPa, μB)."""

# 1 eV/Å³ in GPa (= 1 / ase.units.GPa): stresses are reported in GPa, CHGNet's convention
EV_PER_A3_TO_GPA = 160.21766208
