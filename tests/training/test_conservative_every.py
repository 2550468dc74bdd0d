"""``train.conservative_every``: a direct model's train step that also fits the energy's gradients.

The reference is built from parts tested elsewhere: the direct model's loss (its heads' forces
and stress), plus the force/stress loss of the conservative model that shares its trunk params
(forces and stress from autodiff of the energy, `tests/nn/test_direct_heads.py` shows the trunks
agree). With plain SGD at rate 1 the step's gradient is ``params - new params``.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from trainutil import TINY_MODEL

from equijax.graphs import BucketPolicy, atoms_to_graph
from equijax.models.chgnet import CHGNet
from equijax.potential import predict_padded
from equijax.training.batches import device_batch
from equijax.training.config import LossConfig, StageTwoConfig, load_config, to_dict
from equijax.training.loss import loss_sums, total_loss
from equijax.training.model_setup import build_model
from equijax.training.step import init_state, make_mesh, make_train_step

pytestmark = pytest.mark.usefixtures("fast_compiles")

LOSS = LossConfig(stress=0.5, magmoms=0.0)


@pytest.fixture(scope="module")
def setup(uniform_structures):
    """A tiny direct CHGNet built from a training config, perturbed params (so the zero-initialised
    last layers are live), a batch of 4 EMT structures with a device axis, and the config."""
    config = load_config(None, [*TINY_MODEL, "model.forces=direct"])
    structures = uniform_structures[:4]
    graphs = [atoms_to_graph(s.atoms, cutoff=4.0, bond_cutoff=3.0) for s in structures]
    graph, targets, _ = device_batch(graphs, structures, np.arange(4), 1, BucketPolicy())
    direct = build_model(config.model)
    params = direct.init(jax.random.key(0), jax.tree_util.tree_map(lambda x: x[0], graph))
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map(
        lambda x: x + 0.1 * rng.normal(size=x.shape).astype(x.dtype), params
    )
    return direct, params, graph, targets, config


def _reference_loss(
    direct, params, graph, targets, with_gradient_terms, loss_config=LOSS, gradient_weights=None
):
    """The direct loss, plus (``with_gradient_terms``) the conservative model's force/stress loss
    weighted by ``gradient_weights`` ``(forces, stress)`` (default: ``loss_config``'s)."""
    local_graph = jax.tree_util.tree_map(lambda x: x[0], graph)
    local_targets = jax.tree_util.tree_map(lambda x: x[0], targets)
    sums, counts, _ = loss_sums(
        loss_config, predict_padded(direct, params, local_graph), local_targets
    )
    loss = total_loss(loss_config, sums, counts)
    if with_gradient_terms:
        conservative = CHGNet(dataclasses.replace(direct.config, forces="conservative"))
        trunk = {"params": {k: v for k, v in params["params"].items() if k != "direct_heads"}}
        sums_c, counts_c, _ = loss_sums(
            loss_config, predict_padded(conservative, trunk, local_graph), local_targets
        )
        forces, stress = gradient_weights or (loss_config.forces, loss_config.stress)
        only_f_s = dataclasses.replace(
            loss_config, energy=0.0, magmoms=0.0, forces=forces, stress=stress
        )
        loss = loss + total_loss(only_f_s, sums_c, counts_c)
    return loss


@pytest.fixture(scope="module")
def step_every_3(setup):
    """The train step with ``conservative_every=3``, compiled once for every step count."""
    return make_train_step(
        setup[0], optax.sgd(1.0), LOSS, make_mesh(1), ema_decay=0.0, conservative_every=3
    )


@pytest.fixture(scope="module")
def reference(setup):
    """``with_gradient_terms -> (loss, grads)`` of `_reference_loss`, jitted."""
    direct, params, graph, targets, _ = setup
    fns = {
        flag: jax.jit(
            jax.value_and_grad(lambda p, g, t, flag=flag: _reference_loss(direct, p, g, t, flag))
        )
        for flag in (True, False)
    }
    return {flag: fn(params, graph, targets) for flag, fn in fns.items()}


@pytest.mark.parametrize("step_count, with_gradient_terms", [(0, True), (3, True), (1, False)])
def test_step_gradient_matches_direct_plus_conservative_loss(
    setup, step_every_3, reference, step_count, with_gradient_terms
):
    """With ``conservative_every=3``, steps 0 and 3 take the gradient of the direct loss plus the
    conservative force/stress loss; step 1 that of the direct loss alone."""
    _, params, graph, targets, _ = setup
    copy = lambda tree: jax.tree_util.tree_map(jnp.copy, tree)  # the step donates its state
    state = init_state(copy(params), optax.sgd(1.0), seed=0)._replace(
        ema_params=copy(params), step=jnp.asarray(step_count, jnp.int32)
    )
    new_state, metrics = step_every_3(state, graph, targets)
    grads = jax.tree_util.tree_map(
        lambda a, b: np.asarray(a) - np.asarray(b), params, new_state.params
    )
    ref_loss, ref_grads = reference[with_gradient_terms]
    np.testing.assert_allclose(float(metrics["loss"]), float(ref_loss), rtol=1e-5)
    ref_flat = dict(jax.tree_util.tree_flatten_with_path(ref_grads)[0])
    for path, value in jax.tree_util.tree_flatten_with_path(grads)[0]:
        np.testing.assert_allclose(
            value, ref_flat[path], rtol=2e-3, atol=2e-6, err_msg=jax.tree_util.keystr(path)
        )
    # the two kinds of step differ: the gradient terms reach the energy readout
    other = reference[not with_gradient_terms][1]["params"]["energy_readout"]
    assert any(
        np.abs(a - np.asarray(b)).max() > 1e-4
        for a, b in zip(
            jax.tree_util.tree_leaves(grads["params"]["energy_readout"]),
            jax.tree_util.tree_leaves(other),
        )
    )


def _check_step_at(step, setup, step_count, ref):
    """Run ``step`` once from the setup's params with the state's count at ``step_count`` and
    check its loss and gradient (SGD at rate 1: ``params - new params``) against ``ref``, a
    ``(loss, grads)`` pair."""
    _, params, graph, targets, _ = setup
    copy = lambda tree: jax.tree_util.tree_map(jnp.copy, tree)  # the step donates its state
    state = init_state(copy(params), optax.sgd(1.0), seed=0)._replace(
        ema_params=copy(params), step=jnp.asarray(step_count, jnp.int32)
    )
    new_state, metrics = step(state, graph, targets)
    ref_loss, ref_grads = ref
    np.testing.assert_allclose(
        float(metrics["loss"]), float(ref_loss), rtol=1e-5, err_msg=f"step {step_count}"
    )
    grads = jax.tree_util.tree_map(
        lambda a, b: np.asarray(a) - np.asarray(b), params, new_state.params
    )
    for got, want in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(ref_grads)):
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-6, err_msg=f"step {step_count}")


def test_stage_two_weights_from_their_step_in_both_kinds_of_step(setup, reference):
    """``stage_two_from=3`` with ``conservative_every=3``: step 0 (a conservative step) takes the
    first stage's weights; step 3 (conservative) and step 4 (direct) take the gradient of the
    loss of a config whose plain weights are the stage-two weights, with the energy's gradient
    terms (step 3) and without (step 4)."""
    direct, params, graph, targets, _ = setup
    staged = dataclasses.replace(LOSS, stage_two=StageTwoConfig(start=0.5, energy=5.0, stress=2.0))
    second = dataclasses.replace(LOSS, energy=5.0, stress=2.0)
    step = make_train_step(
        direct,
        optax.sgd(1.0),
        staged,
        make_mesh(1),
        ema_decay=0.0,
        conservative_every=3,
        stage_two_from=3,
    )
    reference_two = {
        flag: jax.jit(
            jax.value_and_grad(
                lambda p, g, t, flag=flag: _reference_loss(direct, p, g, t, flag, second)
            )
        )(params, graph, targets)
        for flag in (True, False)
    }
    for step_count, ref in (
        (0, reference[True]),
        (3, reference_two[True]),
        (4, reference_two[False]),
    ):
        _check_step_at(step, setup, step_count, ref)
    # the stage-two weights change the loss: the references of the two stages differ
    assert abs(float(reference_two[True][0]) - float(reference[True][0])) > 1e-3 * float(
        reference[True][0]
    )


def test_gradient_term_weights_in_both_stages(setup):
    """``loss.gradient_forces`` / ``gradient_stress`` (0.3 / 0.02) weigh only the conservative
    steps' gradient terms, and stay fixed when stage two (from step 3) changes the heads'
    forces and stress weights: steps 0 and 3 against references whose gradient terms take
    0.3 / 0.02 and whose head terms take the first and the second stage's weights."""
    direct, params, graph, targets, _ = setup
    weighted = dataclasses.replace(
        LOSS,
        gradient_forces=0.3,
        gradient_stress=0.02,
        stage_two=StageTwoConfig(start=0.5, energy=5.0, forces=3.0, stress=2.0),
    )
    step = make_train_step(
        direct,
        optax.sgd(1.0),
        weighted,
        make_mesh(1),
        ema_decay=0.0,
        conservative_every=3,
        stage_two_from=3,
    )
    second = dataclasses.replace(LOSS, energy=5.0, forces=3.0, stress=2.0)

    def reference(heads, gradient):
        return jax.jit(
            jax.value_and_grad(
                lambda p, g, t: _reference_loss(direct, p, g, t, True, heads, gradient)
            )
        )(params, graph, targets)

    refs = {count: reference(heads, (0.3, 0.02)) for count, heads in ((0, LOSS), (3, second))}
    for step_count, ref in refs.items():
        _check_step_at(step, setup, step_count, ref)
    # each weight matters: the step-0 loss differs from those with either weight at its default
    for gradient in ((1.0, 0.02), (0.3, 0.5)):
        other = float(reference(LOSS, gradient)[0])
        assert abs(float(refs[0][0]) - other) > 1e-4 * other, gradient
    with pytest.raises(ValueError, match="gradient_stress"):
        make_train_step(
            direct,
            optax.sgd(1.0),
            dataclasses.replace(LOSS, gradient_stress=-1.0),
            make_mesh(1),
            0.0,
            conservative_every=2,
        )


@pytest.mark.parametrize(
    "every, stage_every, stage_two_from",
    [
        (0, 1, None),  # stage two never starts (its start rounds to the end of the run)
        (2, 0, 0),  # stage two from step 0 replaces the period with 0
        (0, None, None),
    ],
)
def test_gradient_term_weights_refused_without_conservative_steps(
    setup, every, stage_every, stage_two_from
):
    """A gradient weight that no step would use is refused when the step is built."""
    loss = dataclasses.replace(
        LOSS, gradient_forces=0.5, stage_two=StageTwoConfig(conservative_every=stage_every)
    )
    with pytest.raises(ValueError, match="gradient_forces is set but no step"):
        make_train_step(
            setup[0],
            optax.sgd(1.0),
            loss,
            make_mesh(1),
            0.0,
            conservative_every=every,
            stage_two_from=stage_two_from,
        )


@pytest.mark.parametrize(
    "first_every, second_every, expected",
    [
        # a conservative fine-tuning stage from step 3: direct steps before, conservative ones after
        (0, 1, {0: False, 2: False, 3: True, 4: True}),
        # conservative steps every 2 in stage one, none in stage two
        (2, 0, {0: True, 1: False, 2: True, 3: False, 4: False}),
        # every 2 in stage two, counted from its first step
        (0, 2, {2: False, 3: True, 4: False, 5: True}),
    ],
)
def test_stage_two_conservative_every(setup, reference, first_every, second_every, expected):
    """``loss.stage_two.conservative_every`` replaces ``conservative_every`` from
    ``stage_two_from`` on: each step takes the gradient of the direct loss, plus the conservative
    force/stress loss on the steps that its stage's k selects (same weights in both stages)."""
    direct = setup[0]
    staged = dataclasses.replace(
        LOSS, stage_two=StageTwoConfig(start=0.5, conservative_every=second_every)
    )
    step = make_train_step(
        direct,
        optax.sgd(1.0),
        staged,
        make_mesh(1),
        ema_decay=0.0,
        conservative_every=first_every,
        stage_two_from=3,
    )
    for step_count, with_gradient_terms in expected.items():
        _check_step_at(step, setup, step_count, reference[with_gradient_terms])


def test_gradient_forces_and_load_trained_as_conservative(setup, tmp_path):
    """``predict_padded(gradient_forces=True)`` of a direct model: energy, forces and stress equal
    those of the run loaded with `load_trained(forces="conservative")` (heads dropped, forces and
    stress from autodiff of the energy), and the heads' outputs come as ``direct_forces`` /
    ``direct_stress``, equal to the plain direct prediction."""
    from equijax.training.checkpoint import Checkpoints
    from equijax.training.trained import load_trained

    direct, params, graph, _, config = setup
    local = jax.tree_util.tree_map(lambda x: x[0], graph)
    (tmp_path / "config.json").write_text(json.dumps(to_dict(config)))
    checkpoints = Checkpoints(tmp_path)
    checkpoints.save_best(1, init_state(params, optax.sgd(1.0), 0), {"epoch": 1}, 0.0)
    checkpoints.close()
    conservative, trunk = load_trained(tmp_path, forces="conservative")
    assert conservative.config.forces == "conservative" and "direct_heads" not in trunk["params"]
    assert load_trained(tmp_path)[0].config.forces == "direct"
    with pytest.raises(ValueError, match="as 'conservative'"):
        load_trained(tmp_path, forces="direkt")

    both = jax.jit(lambda p, g: predict_padded(direct, p, g, gradient_forces=True))(params, local)
    ref_c = jax.jit(lambda p, g: predict_padded(conservative, p, g))(trunk, local)
    ref_d = jax.jit(lambda p, g: predict_padded(direct, p, g))(params, local)
    for key in ("energy", "forces", "stress", "magmoms"):
        np.testing.assert_allclose(both[key], ref_c[key], rtol=1e-5, atol=1e-5, err_msg=key)
    np.testing.assert_allclose(both["direct_forces"], ref_d["forces"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(both["direct_stress"], ref_d["stress"], rtol=1e-5, atol=1e-5)
    assert np.abs(np.asarray(both["forces"]) - np.asarray(ref_d["forces"])).max() > 1e-3


def test_refused_for_a_conservative_model(setup):
    direct = setup[0]
    conservative = CHGNet(dataclasses.replace(direct.config, forces="conservative"))
    with pytest.raises(ValueError, match="direct heads"):
        make_train_step(conservative, optax.sgd(1.0), LOSS, make_mesh(1), 0.0, conservative_every=2)
    with pytest.raises(ValueError, match=">= 0"):
        make_train_step(direct, optax.sgd(1.0), LOSS, make_mesh(1), 0.0, conservative_every=-1)
    tuned = dataclasses.replace(LOSS, stage_two=StageTwoConfig(start=0.5, conservative_every=1))
    with pytest.raises(ValueError, match="stage_two.conservative_every needs a model with direct"):
        make_train_step(conservative, optax.sgd(1.0), tuned, make_mesh(1), 0.0, stage_two_from=2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"conservative_every": -1}, "conservative_every must be >= 0"),
        ({"stage_two_from": -1}, "stage_two_from must be >= 0 or None"),
        (
            {
                "stage_two_from": 2,
                "loss_config": dataclasses.replace(
                    LOSS, stage_two=StageTwoConfig(start=0.5, conservative_every=-1)
                ),
            },
            "loss.stage_two.conservative_every must be >= 0",
        ),
    ],
)
def test_negative_step_options_are_refused(kwargs, message):
    """Negative step counts stop `make_train_step` before anything is traced."""
    kwargs = dict(kwargs)  # the parameter's dict is shared between runs: do not mutate it
    with pytest.raises(ValueError, match=message):
        make_train_step(
            None,
            optax.sgd(1.0),
            kwargs.pop("loss_config", LOSS),
            make_mesh(1),
            ema_decay=0.0,
            **kwargs,
        )
