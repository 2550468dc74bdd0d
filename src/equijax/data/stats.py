"""Training statistics in one streaming pass: partial sums per chunk of structures, merged by
adding, finished into the AtomRef fit, label normalisations and the average neighbour count.

The AtomRef fit solves the normal equations of `fit_atomref`'s least squares (energy per atom
on composition fractions), so it needs only (E, E) and (E,) sums, E = 94 elements.
"""

from __future__ import annotations

import numpy as np

from equijax.data.structures import LabeledStructure

ATOMREF_ELEMENTS = 94  # the AtomRef's size (equijax.nn.readout.MAX_ELEMENTS)
_SCALARS = (
    "n_structures",
    "n_atoms",
    "n_edges",
    "n_angles",
    "n_energy",
    "sum_energy_per_atom",
    "sum_energy_per_atom_sq",
    "n_force_components",
    "sum_force_sq",
    "n_stress_components",
    "sum_stress_sq",
    "n_magmoms",
    "sum_abs_magmoms",
    "max_atoms",
    "max_edges",
    "max_angles",
)


class StatsAccumulator:
    """Partial sums over structures (`add`), JSON-able (`to_dict`) and mergeable (`merge`)."""

    def __init__(self):
        self.s = dict.fromkeys(_SCALARS, 0)
        self.xtx = np.zeros((ATOMREF_ELEMENTS, ATOMREF_ELEMENTS))
        self.xty = np.zeros(ATOMREF_ELEMENTS)
        self.yy = 0.0
        self.element_counts = np.zeros(119, np.int64)

    def add(self, s: LabeledStructure, n_edges: int, n_angles: int) -> None:
        """Add one structure and its graph's directed edge and angle counts."""
        n = s.n_atoms
        v = self.s
        v["n_structures"] += 1
        v["n_atoms"] += n
        v["n_edges"] += n_edges
        v["n_angles"] += n_angles
        v["max_atoms"] = max(v["max_atoms"], n)
        v["max_edges"] = max(v["max_edges"], n_edges)
        v["max_angles"] = max(v["max_angles"], n_angles)
        numbers = s.atoms.numbers
        self.element_counts += np.bincount(numbers, minlength=119)[:119]
        if s.energy is not None:
            y = s.energy / n
            x = np.bincount(numbers - 1, minlength=ATOMREF_ELEMENTS)[:ATOMREF_ELEMENTS] / n
            self.xtx += np.outer(x, x)
            self.xty += x * y
            self.yy += y * y
            v["n_energy"] += 1
            v["sum_energy_per_atom"] += y
            v["sum_energy_per_atom_sq"] += y * y
        if s.forces is not None:
            v["n_force_components"] += s.forces.size
            v["sum_force_sq"] += float(np.sum(s.forces**2))
        if s.stress is not None:
            v["n_stress_components"] += 9
            v["sum_stress_sq"] += float(np.sum(s.stress**2))
        if s.magmoms is not None:
            v["n_magmoms"] += n
            v["sum_abs_magmoms"] += float(np.sum(np.abs(s.magmoms)))

    def to_dict(self) -> dict:
        """The partial sums as plain JSON types."""
        return {
            **self.s,
            "xtx": self.xtx.tolist(),
            "xty": self.xty.tolist(),
            "yy": self.yy,
            "element_counts": self.element_counts.tolist(),
        }

    @classmethod
    def merge(cls, parts: list[dict]) -> StatsAccumulator:
        """The accumulator of several `to_dict` outputs (sums added, maxima taken)."""
        out = cls()
        for p in parts:
            for k in _SCALARS:
                out.s[k] = max(out.s[k], p[k]) if k.startswith("max_") else out.s[k] + p[k]
            out.xtx += np.asarray(p["xtx"])
            out.xty += np.asarray(p["xty"])
            out.yy += p["yy"]
            out.element_counts += np.asarray(p["element_counts"], np.int64)
        return out

    def finish(self) -> dict:
        """The statistics training uses (JSON-able):

        ``atomref`` (94,) eV per element (least squares of energy per atom on composition, as
        `fit_atomref`; absent elements 0), ``energy_per_atom_mean`` / ``_std`` eV/atom,
        ``atomref_residual_std`` eV/atom (energy per atom minus the AtomRef's), ``force_rms``
        eV/Å, ``stress_rms`` GPa, ``magmom_mean_abs`` μB (None without labels),
        ``avg_num_neighbors`` (directed edges per atom), ``avg_num_angles`` (per atom),
        ``elements`` (atomic numbers present), counts, and per-structure maxima.
        """
        v = self.s
        n_e = v["n_energy"]
        weights = np.zeros(ATOMREF_ELEMENTS)
        residual = None
        if n_e:
            weights = np.linalg.lstsq(self.xtx, self.xty, rcond=None)[0]
            sse = self.yy - 2 * weights @ self.xty + weights @ self.xtx @ weights
            residual = float(np.sqrt(max(sse, 0.0) / n_e))
        mean = v["sum_energy_per_atom"] / n_e if n_e else None
        std = np.sqrt(max(v["sum_energy_per_atom_sq"] / n_e - mean**2, 0.0)) if n_e else None

        def rms(total, count):
            return float(np.sqrt(total / count)) if count else None

        return {
            **{k: int(v[k]) for k in _SCALARS if k.startswith(("n_", "max_"))},
            "avg_num_neighbors": v["n_edges"] / v["n_atoms"] if v["n_atoms"] else 0.0,
            "avg_num_angles": v["n_angles"] / v["n_atoms"] if v["n_atoms"] else 0.0,
            "elements": np.flatnonzero(self.element_counts).tolist(),
            "energy_per_atom_mean": mean,
            "energy_per_atom_std": None if std is None else float(std),
            "atomref": weights.tolist(),
            "atomref_residual_std": residual,
            "force_rms": rms(v["sum_force_sq"], v["n_force_components"]),
            "stress_rms": rms(v["sum_stress_sq"], v["n_stress_components"]),
            "magmom_mean_abs": v["sum_abs_magmoms"] / v["n_magmoms"] if v["n_magmoms"] else None,
        }
