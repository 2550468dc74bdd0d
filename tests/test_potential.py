"""`Potential`'s memory-lean mode (blocks recomputed in the force/stress backward pass) against
the plain mode: the same energies, forces and stress, chosen by size unless forced."""

from __future__ import annotations

import dataclasses

import ase.build
import numpy as np
import pytest

from equijax.graphs import BucketPolicy
from equijax.potential import Potential

pytestmark = pytest.mark.usefixtures("fast_compiles")


def _cell():
    atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 3))  # 48 atoms
    atoms.rattle(0.05, seed=0)
    return atoms


def test_lean_equals_plain(chgnet_potential):
    policy = BucketPolicy(growth=2.0, multiple=64, minimum=64)
    kw = dict(policy=policy)
    base = chgnet_potential.module, chgnet_potential.params
    plain = Potential(*base, lean=False, **kw)
    lean = Potential(*base, lean=True, **kw)
    got, want = lean.predict(_cell()), plain.predict(_cell())
    assert {s[-1] for s in lean.compiled_shapes} == {True}
    assert {s[-1] for s in plain.compiled_shapes} == {False}
    for key in ("energy", "forces", "stress", "magmoms"):
        a, b = np.asarray(got[key]), np.asarray(want[key])
        # float32 rounding (the sums run in pieces); tests/models/test_chgnet_lean.py shows
        # the two are the same function to 1e-10 in float64
        assert np.abs(a - b).max() <= 1e-5 * max(np.abs(b).max(), 1.0), key


def test_lean_is_chosen_by_size_and_checks_its_arguments(chgnet_potential):
    base = chgnet_potential.module, chgnet_potential.params
    # the pair-free lean mode (the pretrained configs) is faster too: used at every size
    assert Potential(*base, lean_atoms=100).uses_lean(8)
    # a config with a norm after the residual sum keeps the rematerialised one: by size
    config = dataclasses.replace(base[0].config, conv_norm="layer")
    auto = Potential(base[0].clone(config=config), base[1], lean_atoms=100)
    assert auto.uses_lean(128) and not auto.uses_lean(64)
    assert not Potential(*base, lean=False, lean_atoms=1).uses_lean(10**6)
    with pytest.raises(ValueError, match="lean_atoms"):
        Potential(*base, lean_atoms=0)
