"""`EquijaxCalculator`: any equijax potential as an `ase.calculators.calculator.Calculator`."""

from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from equijax.graphs import BucketPolicy
from equijax.models import registry
from equijax.models.protocol import Model
from equijax.potential import Potential
from equijax.units import EV_PER_A3_TO_GPA


class EquijaxCalculator(Calculator):
    """ASE calculator for an equijax model (energy, free_energy, forces, stress, magmoms).

    Units are ASE's: eV, eV/Å, eV/Å³ (stress as a Voigt 6-vector, ASE's sign), μB. Structures are
    padded to size buckets, so MD, relaxations and changing structure sizes reuse compiled code.
    Stress is only defined for structures periodic in all three directions, and is computed only
    when ASE asks for it (MD asks for forces alone, so its steps skip the strain derivative; a
    later ``get_stress()`` runs the model again, with stress). ``lean`` /
    ``lean_atoms`` choose the memory-lean mode for large cells (`equijax.potential.Potential`;
    by default from 256 padded atoms on, for models that have it).

    Example::

        calc = EquijaxCalculator.from_pretrained("chgnet-0.3.0")
        atoms.calc = calc
        atoms.get_potential_energy()
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "magmoms"]

    def __init__(
        self,
        module: Model,
        params,
        *,
        cutoff: float | None = None,
        bond_cutoff: float | None = None,
        policy: BucketPolicy | None = None,
        lean: bool | None = None,
        lean_atoms: int = 256,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.potential = Potential(
            module,
            params,
            cutoff=cutoff,
            bond_cutoff=bond_cutoff,
            policy=policy,
            lean=lean,
            lean_atoms=lean_atoms,
        )

    @classmethod
    def from_pretrained(cls, name: str = "chgnet-0.3.0", **kwargs) -> EquijaxCalculator:
        """Calculator for the pretrained model ``name`` (`equijax.models.registry`; ``"0.3.0"``
        works too)."""
        module, params = registry.load_pretrained(name)
        return cls(module, params, **kwargs)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        want_stress = "stress" in properties
        if want_stress and not self.atoms.pbc.all():
            raise PropertyNotImplementedError(
                "stress needs a structure periodic in all three directions"
            )
        # stress only when asked (MD asks for forces alone; a later stress request recomputes)
        result = self.potential.predict(self.atoms, compute_stress=want_stress)
        self.results = {
            "energy": result["energy"],
            "free_energy": result["energy"],
            "forces": result["forces"],
            "magmoms": result["magmoms"],
        }
        if "stress" in result:
            self.results["stress"] = full_3x3_to_voigt_6_stress(
                np.asarray(result["stress"]) / EV_PER_A3_TO_GPA
            )
