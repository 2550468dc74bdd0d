"""Shared fixtures: the benchmark structures and a field-by-field comparison of crystal graphs."""

from __future__ import annotations

from pathlib import Path

import ase.io
import jax
import numpy as np
import pytest

# The CLI loads its handlers (and through them absl/orbax logging) on a command's first run. A
# test that runs a command in-process under output capture would bind those logging handlers to
# pytest's temporary streams, which later tests find closed; load them here, outside any capture.
import equijax.cli.commands  # noqa: F401, E402

BENCH_FILE = (
    Path(__file__).resolve().parents[1]
    / "src"
    / "equijax"
    / "bench"
    / "data"
    / "mptrj_like_256.extxyz"
)


@pytest.fixture(scope="session")
def bench_structures() -> list:
    """The 256 MPtrj-like benchmark structures (ase.Atoms)."""
    return ase.io.read(BENCH_FILE, ":")


def _named_leaves(graph):
    leaves, _ = jax.tree_util.tree_flatten_with_path(graph)
    return {jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def assert_graphs_identical(got, want, context: str = "") -> None:
    """Same pytree structure, and every leaf has the same shape, dtype and values."""
    got_leaves, want_leaves = _named_leaves(got), _named_leaves(want)
    assert got_leaves.keys() == want_leaves.keys(), context
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want), context
    for name, w in want_leaves.items():
        g = got_leaves[name]
        g, w = np.asarray(g), np.asarray(w)
        assert g.dtype == w.dtype, f"{context}{name}: dtype {g.dtype} != {w.dtype}"
        assert g.shape == w.shape, f"{context}{name}: shape {g.shape} != {w.shape}"
        np.testing.assert_array_equal(g, w, err_msg=f"{context}{name}")


@pytest.fixture(scope="session")
def graphs_identical():
    """The `assert_graphs_identical` helper, as a fixture (conftest is not importable)."""
    return assert_graphs_identical


# Coarse buckets: every test that predicts with the pretrained CHGNet shares compiled shapes.
TEST_POLICY_KWARGS = dict(growth=2.0, multiple=64, minimum=64)


@pytest.fixture(scope="session")
def chgnet_potential():
    """The pretrained CHGNet 0.3.0 as an equijax `Potential` (float32), shared by all tests."""
    from equijax.graphs import BucketPolicy
    from equijax.potential import Potential

    return Potential.from_pretrained("0.3.0", policy=BucketPolicy(**TEST_POLICY_KWARGS))


@pytest.fixture(scope="session")
def torch_chgnet():
    """The PyTorch reference CHGNet 0.3.0 (chgnet 0.4.2), in eval mode on the CPU."""
    import torch
    from chgnet.model import CHGNet

    torch.set_num_threads(2)
    model = CHGNet.load(model_name="0.3.0", use_device="cpu", verbose=False)
    return model.eval()


@pytest.fixture(scope="module")
def fast_compiles():
    """``jax_disable_most_optimizations`` for a module (XLA backend -O0 and LLVM's expensive passes
    off: about half the compile time on CPU; results agree to rounding), restored afterwards. The
    flag is not part of jit's cache key, so a session fixture's function compiled here (e.g.
    ``chgnet_potential``'s) keeps its -O0 executable in later files; tests compare with
    tolerances far above rounding, so this only changes speed. Use with
    ``pytestmark = pytest.mark.usefixtures("fast_compiles")``."""
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


def _strained_silicon():
    """A strained, rattled periodic diamond-silicon cell (ase.Atoms) with its 4.5 Å graph."""
    import ase.build

    from equijax.graphs import atoms_to_graph

    atoms = ase.build.bulk("Si", "diamond", 5.43, cubic=True)
    atoms.set_cell(
        atoms.cell.array @ np.array([[1.02, 0.03, 0.0], [0.0, 0.97, 0.02], [0.0, 0.0, 1.01]]),
        scale_atoms=True,
    )
    atoms.rattle(0.15, seed=4)
    return atoms, atoms_to_graph(atoms, cutoff=4.5)


@pytest.fixture(scope="session")
def strained_silicon():
    """``(atoms, graph)``: a strained, rattled diamond-silicon cell and its 4.5 Å crystal graph."""
    return _strained_silicon()


def autodiff_forces_and_stress(atom_graph, energy_of_vectors, volume: float):
    """The independent reference for direct heads: forces (N, 3) eV/Å = −∂E/∂x and stress (3, 3)
    GPa = (160.2 / V) ∂E/∂ε of ``energy_of_vectors((E, 3) edge vectors) -> scalar eV``, by
    `jax.grad` through `edge_vectors` of the graph's strained positions and cell."""
    import jax.numpy as jnp

    from equijax.graphs.crystal_graph import edge_vectors
    from equijax.units import EV_PER_A3_TO_GPA

    def energy(positions, strain):
        deform = jnp.eye(3) + strain
        strained = atom_graph._replace(
            nodes={**atom_graph.nodes, "positions": positions @ deform.T},
            globals={**atom_graph.globals, "cell": atom_graph.globals["cell"] @ deform.T},
        )
        return energy_of_vectors(edge_vectors(strained, jnp))

    positions = jnp.asarray(atom_graph.nodes["positions"], jnp.float32)
    zero = jnp.zeros((3, 3))
    return (
        -jax.grad(energy)(positions, zero),
        jax.grad(energy, 1)(positions, zero) / volume * EV_PER_A3_TO_GPA,
    )


@pytest.fixture(scope="session")
def autodiff_reference():
    """`autodiff_forces_and_stress`, as a fixture (conftest is not importable)."""
    return autodiff_forces_and_stress
