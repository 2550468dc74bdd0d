"""`EquijaxCalculator` against chgnet's PyTorch `CHGNetCalculator`, finite differences, NVE energy
conservation, a BFGS relaxation, compile reuse and non-periodic input."""

from __future__ import annotations

import ase
import ase.build
import numpy as np
import pytest
from ase import units
from ase.calculators.calculator import PropertyNotImplementedError
from ase.md import velocitydistribution
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS

from equijax.calculators import EquijaxCalculator
from equijax.graphs import BucketPolicy, pad_batch
from equijax.graphs.crystal_graph import GraphSizes

# float32 tolerances (as for the model against torch)
TOL_E_PER_ATOM, TOL_F, TOL_S_GPA, TOL_M = 2e-5, 2e-4, 2e-3, 2e-4
# benchmark structures in the same small bucket: 8-atom ZnS and GaAs cells
TORCH_BENCH = [1, 17]


@pytest.fixture(scope="module")
def calc(chgnet_potential) -> EquijaxCalculator:
    """One calculator for the whole module (its jit cache is shared by all tests here)."""
    pot = chgnet_potential
    return EquijaxCalculator(pot.module, pot.params, policy=pot.policy)


@pytest.fixture(scope="module")
def torch_calc(torch_chgnet):
    """chgnet's own ASE calculator around the PyTorch reference model."""
    from chgnet.model.dynamics import CHGNetCalculator

    return CHGNetCalculator(torch_chgnet, use_device="cpu")


def _si8(rattle: float, seed: int) -> ase.Atoms:
    atoms = ase.build.bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(rattle, seed=seed)
    return atoms


def _thermalize(atoms: ase.Atoms, temperature_k: float, seed: int) -> None:
    """Maxwell-Boltzmann momenta (ASE >= 3.29 spells it `thermalize_momenta`), zero total momentum."""
    rng = np.random.default_rng(seed)
    if hasattr(velocitydistribution, "thermalize_momenta"):
        velocitydistribution.thermalize_momenta(atoms, temperature_k, rng=rng)
    else:
        velocitydistribution.MaxwellBoltzmannDistribution(
            atoms, temperature_K=temperature_k, rng=rng
        )
    velocitydistribution.Stationary(atoms)


def _si8_triclinic(seed: int) -> ase.Atoms:
    """8 Si atoms in a sheared, rattled supercell of the (non-orthogonal) primitive cell."""
    atoms = ase.build.bulk("Si", "diamond", a=5.43).repeat((2, 2, 1))
    rng = np.random.default_rng(seed)
    strain = 0.02 * rng.standard_normal((3, 3))
    atoms.set_cell(atoms.cell[:] @ (np.eye(3) + (strain + strain.T) / 2), scale_atoms=True)
    atoms.rattle(0.05, seed=seed)
    return atoms


def _bucket(calc: EquijaxCalculator, atoms: ase.Atoms):
    graphs = calc.potential.graphs([atoms])
    return pad_batch(graphs, calc.potential.policy)[0].sizes


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
@pytest.mark.parametrize("case", [f"bench{i}" for i in TORCH_BENCH] + ["si_triclinic"])
def test_matches_torch_chgnet_calculator(calc, torch_calc, bench_structures, case):
    """Energy, forces, stress (ASE units, Voigt) and magmoms equal chgnet's `CHGNetCalculator`."""
    if case.startswith("bench"):
        atoms = bench_structures[int(case[5:])]
    else:
        atoms = _si8_triclinic(seed=11)
    ours, ref = atoms.copy(), atoms.copy()
    ours.calc, ref.calc = calc, torch_calc
    n = len(ours)
    e, e_ref = ours.get_potential_energy(), ref.get_potential_energy()
    assert abs(e - e_ref) / n <= TOL_E_PER_ATOM
    assert ours.get_potential_energy(force_consistent=True) == pytest.approx(e)
    f, f_ref = ours.get_forces(), ref.get_forces()
    assert f.shape == (n, 3)
    np.testing.assert_allclose(f, f_ref, atol=TOL_F, rtol=0)
    assert np.abs(f_ref).max() > 0.1  # a structure with real forces
    s, s_ref = ours.get_stress(), ref.get_stress()  # both eV/Å³, Voigt order
    assert s.shape == (6,)
    np.testing.assert_allclose(s / units.GPa, s_ref / units.GPa, atol=TOL_S_GPA, rtol=0)
    assert np.abs(s_ref / units.GPa).max() > 0.5  # and real stress
    m, m_ref = ours.get_magnetic_moments(), ref.get_magnetic_moments()
    np.testing.assert_allclose(m, m_ref, atol=TOL_M, rtol=0)


def test_forces_match_finite_differences(calc):
    """Forces on one atom equal central differences of `get_potential_energy` (h = 1e-3 Å)."""
    atoms = _si8(0.05, seed=1)
    atoms.calc = calc
    forces = atoms.get_forces()
    h, atom = 1e-3, 0
    fd = np.zeros(3)
    for k in range(3):
        energies = []
        for sign in (1, -1):
            displaced = atoms.copy()
            displaced.positions[atom, k] += sign * h
            displaced.calc = calc
            energies.append(displaced.get_potential_energy())
        fd[k] = -(energies[0] - energies[1]) / (2 * h)
    assert np.abs(forces[atom]).max() > 0.2
    np.testing.assert_allclose(forces[atom], fd, atol=5e-3, rtol=0)
    # and Newton's third law: the forces of a periodic cell sum to zero
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-4)


@pytest.mark.parametrize("component", [0, 5])
def test_stress_matches_finite_differences_of_strain(calc, component):
    """σ_xx and σ_xy (Voigt 0, 5) equal dE/dε / V by central differences of a symmetric strain of
    a triclinic cell (ASE's sign and units)."""
    atoms = _si8_triclinic(seed=2)
    atoms.calc = calc
    stress = atoms.get_stress()
    i, j = {0: (0, 0), 5: (0, 1)}[component]
    direction = np.zeros((3, 3))
    direction[i, j] = direction[j, i] = 1.0 if i == j else 0.5
    h = 1e-3
    energies = []
    for sign in (1, -1):
        strained = atoms.copy()
        strained.set_cell(atoms.cell[:] @ (np.eye(3) + sign * h * direction), scale_atoms=True)
        strained.calc = calc
        energies.append(strained.get_potential_energy())
    fd = (energies[0] - energies[1]) / (2 * h) / atoms.get_volume()
    assert abs(stress[component]) > 5e-4  # > 0.08 GPa
    # float32 energies (~1e-5 eV of noise) limit the difference quotient to ~2e-5 eV/Å³
    assert stress[component] == pytest.approx(fd, abs=1e-4)


def test_no_recompile_for_new_sizes_in_a_bucket(calc):
    """Structures of different sizes (6 and 8 atoms) in one bucket reuse one compiled function."""
    si8 = _si8(0.03, seed=3)
    si6 = ase.build.bulk("Si", "diamond", a=5.43).repeat((3, 1, 1))
    si6.rattle(0.03, seed=4)
    si8_b = _si8(0.02, seed=5)
    si8_b.set_cell(si8_b.cell * 1.01, scale_atoms=True)
    structures = [si8, si6, si8_b]
    assert len({_bucket(calc, a) for a in structures}) == 1  # precondition: one bucket
    assert len({len(a) for a in structures}) == 2
    si8.calc = calc
    si8.get_potential_energy()
    compiled = calc.potential._predict._cache_size()
    shapes = set(calc.potential.compiled_shapes)
    for atoms in structures[1:]:
        atoms.calc = calc
        assert np.isfinite(atoms.get_potential_energy())
        assert atoms.get_forces().shape == (len(atoms), 3)
    assert calc.potential._predict._cache_size() == compiled
    assert calc.potential.compiled_shapes == shapes


def test_bfgs_relaxation_converges_and_lowers_energy(calc):
    """BFGS relaxes a rattled Si cell to fmax < 0.05 eV/Å within 200 steps, lowering the energy."""
    atoms = _si8(0.1, seed=6)
    atoms.calc = calc
    e0 = atoms.get_potential_energy()
    fmax0 = np.linalg.norm(atoms.get_forces(), axis=1).max()
    assert fmax0 > 0.5
    opt = BFGS(atoms, logfile=None)
    converged = opt.run(fmax=0.05, steps=200)
    assert converged
    assert np.linalg.norm(atoms.get_forces(), axis=1).max() < 0.05
    assert atoms.get_potential_energy() < e0 - 0.01


def test_nve_energy_conservation_and_single_compile(chgnet_potential):
    """NVE velocity Verlet, 1 fs x 300 steps, 32-atom diamond Ge at 300 K: |E(t) - E(0)| / N <=
    1e-4 eV/atom, and the calculator compiles exactly one shape for the whole run."""
    # Its own calculator, with buckets fitted to one structure (one graph per batch, 1.5x size
    # steps): the shared coarse buckets would pad this cell to 2048+ edges and 64 graphs, and 300
    # steps of that are among the slowest parts of the suite. Ge rather than Si: a 6.17 Å shell instead of
    # Si's 5.92 Å one gives 26% fewer edges, while neighbours still cross the 6 Å cutoff.
    pot = chgnet_potential
    atoms = ase.build.bulk("Ge", "diamond", a=5.66, cubic=True).repeat((2, 2, 1))
    assert len(atoms) == 32
    _thermalize(atoms, 300, seed=0)
    # one joint bucket with 25% headroom over the starting sizes: 6 Å neighbours come and go
    # by a few percent, so every step fits it (ladders of per-dimension buckets can put a start
    # size right at a boundary, which the 32-atom cell hit)
    start = pot.graphs([atoms])[0].sizes
    joint = GraphSizes(*(int(1.25 * n) + 16 for n in start[:4]), n_graph=1)
    policy = BucketPolicy(growth=1.5, joint=joint, fixed_graphs=1)
    md_calc = EquijaxCalculator(pot.module, pot.params, policy=policy)
    atoms.calc = md_calc
    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs, logfile=None)
    totals, temperatures, shape_sets, cache_sizes, edges = [], [], [], [], set()

    def record():
        totals.append(atoms.get_potential_energy() + atoms.get_kinetic_energy())
        temperatures.append(atoms.get_temperature())
        shape_sets.append(frozenset(md_calc.potential.compiled_shapes))
        pot = md_calc.potential  # executables of the plain and the lean predictors together
        cache_sizes.append(pot._predict._cache_size() + pot._lean_predict._cache_size())
        if len(totals) % 50 == 1:
            edges.add(md_calc.potential.graphs([atoms])[0].sizes.n_edge)

    dyn.attach(record, interval=1)
    dyn.run(300)
    assert len(totals) == 301
    drift = np.abs(np.asarray(totals) - totals[0]) / len(atoms)
    assert drift.max() <= 1e-4, f"max |ΔE_total| = {drift.max():.2e} eV/atom"
    # the run really is dynamic: kinetic energy flows into the potential (T drops towards ~150 K)
    assert 300 * 0.2 < min(temperatures) < 300 * 0.8
    # neighbours crossed the cutoff (the graph changed size), yet one shape served every step
    assert len(edges) > 1
    assert all(s == shape_sets[0] for s in shape_sets) and len(shape_sets[0]) == 1
    assert all(c == 1 for c in cache_sizes)


def test_molecule_energy_forces_but_no_stress(calc):
    """A non-periodic molecule gives energy and forces (summing to zero) but stress raises
    `PropertyNotImplementedError`."""
    mol = ase.build.molecule("CH3CH2OH")
    mol.rattle(0.02, seed=7)
    assert not mol.pbc.any()
    mol.calc = calc
    energy = mol.get_potential_energy()
    forces = mol.get_forces()
    assert np.isfinite(energy) and forces.shape == (len(mol), 3) and np.all(np.isfinite(forces))
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-4)
    assert np.abs(forces).max() > 0.1
    with pytest.raises(PropertyNotImplementedError):
        mol.get_stress()
    # energy and forces still work after the failed stress request
    assert mol.get_potential_energy() == pytest.approx(energy)
    # rigid translation does not change the energy of an isolated molecule
    moved = mol.copy()
    moved.translate([3.0, -2.0, 7.5])
    moved.calc = calc
    assert moved.get_potential_energy() == pytest.approx(energy, abs=2e-4)


def test_from_pretrained_builds_the_same_calculator(chgnet_potential):
    """`EquijaxCalculator.from_pretrained()` holds the pretrained CHGNet: same config, params, cutoffs."""
    import jax

    fresh = EquijaxCalculator.from_pretrained("0.3.0", policy=chgnet_potential.policy)
    assert fresh.potential.module.config == chgnet_potential.module.config
    assert (fresh.potential.cutoff, fresh.potential.bond_cutoff) == (6.0, 3.0)
    same = jax.tree_util.tree_map(np.array_equal, fresh.potential.params, chgnet_potential.params)
    assert all(jax.tree_util.tree_leaves(same))
    assert set(fresh.implemented_properties) >= {
        "energy",
        "free_energy",
        "forces",
        "stress",
        "magmoms",
    }
