"""One-pass dataset statistics against the in-memory computations they replace."""

from __future__ import annotations

import numpy as np

from equijax.data import fit_atomref
from equijax.data.stats import StatsAccumulator
from equijax.graphs import atoms_to_graph


def test_streamed_statistics_equal_in_memory(mixed_structures):
    structures = [s for s in mixed_structures if len(s.atoms) > 1 or s.atoms.pbc.all()]
    parts = [StatsAccumulator() for _ in range(3)]
    edges = atoms = 0
    for k, s in enumerate(structures):
        g = atoms_to_graph(s.atoms)
        parts[k % 3].add(s, g.sizes.n_edge, g.sizes.n_angle)
        edges, atoms = edges + g.sizes.n_edge, atoms + len(s.atoms)
    merged = StatsAccumulator.merge([p.to_dict() for p in parts]).finish()
    np.testing.assert_allclose(merged["atomref"], fit_atomref(structures), atol=2e-5)
    labelled = [s for s in structures if s.energy is not None]
    e = np.array([s.energy / len(s.atoms) for s in labelled])
    np.testing.assert_allclose(merged["energy_per_atom_mean"], e.mean())
    np.testing.assert_allclose(merged["energy_per_atom_std"], e.std())
    forces = np.concatenate([s.forces.ravel() for s in structures if s.forces is not None])
    np.testing.assert_allclose(merged["force_rms"], np.sqrt(np.mean(forces**2)))
    assert merged["avg_num_neighbors"] == edges / atoms
    assert merged["n_structures"] == len(structures) and merged["n_energy"] == len(labelled)
    want_elements = sorted({int(z) for s in structures for z in s.atoms.numbers})
    assert merged["elements"] == want_elements
