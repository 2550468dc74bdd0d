"""`hlo_summary` on hand-written HLO text (known counts), and the stage timer against sleeps."""

import time

import pytest

from equijax.bench.breakdown import median_ms
from equijax.bench.hlo import compiled_summary, hlo_summary

HLO = """HloModule jit_step, is_scheduled=true

%fused_gather_mlp (p0: f32[8,4], p1: s32[8,1]) -> f32[8,4] {
  %p0 = f32[8,4]{1,0} parameter(0)
  %p1 = s32[8,1]{1,0} parameter(1)
  %gather.1 = f32[8,4]{1,0} gather(%p0, %p1), offset_dims={1}, slice_sizes={1,4}
  ROOT %tanh.1 = f32[8,4]{1,0} tanh(%gather.1)
}

%wrapped_scatter_computation (q0: f32[4,4], q1: s32[8,1], q2: f32[8,4]) -> f32[4,4] {
  %q0 = f32[4,4]{1,0} parameter(0)
  %q1 = s32[8,1]{1,0} parameter(1)
  %q2 = f32[8,4]{1,0} parameter(2)
  ROOT %scatter.1 = f32[4,4]{1,0} scatter(%q0, %q1, %q2), update_window_dims={1}, to_apply=%add
}

%command_buffer (r0: f32[8,4]) -> f32[8,4] {
  %r0 = f32[8,4]{1,0} parameter(0)
  %n = f32[8,4]{1,0} negate(%r0)
  ROOT %e = f32[8,4]{1,0} exponential(%n)
}

ENTRY %main (x: f32[8,4], i: s32[8]) -> (f32[4,4], f32[8,4]) {
  %x = f32[8,4]{1,0} parameter(0)
  %i = s32[8]{0} parameter(1)
  %c = f32[] constant(0)
  %b = s32[8,1]{1,0} bitcast(%i)
  %g = f32[8,4]{1,0} fusion(%x, %b), kind=kLoop, calls=%fused_gather_mlp
  %z = f32[4,4]{1,0} broadcast(%c), dimensions={}
  %s = f32[4,4]{1,0} fusion(%z, %b, %g), kind=kInput, calls=%wrapped_scatter_computation
  %cc = f32[8,4]{1,0} custom-call(%g), custom_call_target="__cublas$gemm"
  %cb = f32[8,4]{1,0} call(%g), to_apply=%command_buffer
  %m = (f32[8,4]{1,0}, f32[8,4]{1,0}, f32[8,4]{1,0}, f32[8,4]{1,0}, f32[8,4]{1,0}, /*index=5*/f32[8,4]{1,0}) fusion(%x, %b), kind=kLoop, calls=%fused_gather_mlp
  ROOT %t = (f32[4,4]{1,0}, f32[8,4]{1,0}) tuple(%s, %cc)
}
"""


def test_hlo_summary_counts_a_known_module():
    summary = hlo_summary(HLO)
    # broadcast, three fusions (one multi-output, its tuple type with an /*index=5*/ comment), a
    # GEMM custom-call, and the two kernels inside the called command buffer launch;
    # parameters, constant, bitcast, tuple do not
    assert summary["kernels"] == 7
    assert summary["fusions"] == 3
    assert summary["fusion_kinds"] == {"kInput": 1, "kLoop": 2}
    assert summary["unfused"] == {"broadcast": 1, "custom-call": 1, "exponential": 1, "negate": 1}
    assert summary["alone"] == {"dot": 1, "scatter": 1}  # the GEMM call; a scatter-only fusion
    assert summary["fused"] == {"gather": 2}  # each gather shares its kernel with tanh
    assert summary["unparsed"] == 0
    broken = HLO.replace("  %c = f32[] constant(0)", "  %c = f32[] constant(0)\n  %odd = ???")
    assert hlo_summary(broken)["unparsed"] == 1


def test_hlo_summary_needs_an_entry_computation():
    with pytest.raises(ValueError, match="ENTRY"):
        hlo_summary("HloModule empty\n")


def test_compiled_summary_of_a_real_function():
    """XLA fuses an elementwise chain: far fewer kernels than the 6 operations written."""
    import jax
    import jax.numpy as jnp

    summary = compiled_summary(
        jax.jit(lambda x: jnp.tanh(jnp.sin(x) * 2 + 1) - jnp.exp(x) / 3), jnp.ones((64, 64))
    )
    assert 1 <= summary["kernels"] <= 2


def test_median_ms_times_sleeps_and_rejects_no_repeats():
    calls = []

    def sleeper():
        calls.append(1)
        time.sleep(0.02)

    assert 18.0 < median_ms(sleeper, repeats=3) < 60.0
    assert len(calls) == 4  # one warm-up call, then the timed ones
    with pytest.raises(ValueError, match="repeats"):
        median_ms(sleeper, repeats=0)


def test_stage_breakdown_attributes_the_whole_step():
    """On a tiny CHGNet: the stages add up to the step and their shares to one."""
    import ase.build
    import jax

    from equijax.bench.breakdown import stage_breakdown
    from equijax.graphs import atoms_to_graph
    from equijax.models.chgnet import CHGNet, CHGNetConfig

    module = CHGNet(
        CHGNetConfig(
            atom_fea_dim=8,
            bond_fea_dim=8,
            angle_fea_dim=8,
            num_radial=5,
            num_angular=5,
            n_conv=2,
            atom_conv_hidden_dim=(8,),
            bond_conv_hidden_dim=(8,),
            mlp_hidden_dims=(8,),
        )
    )
    graph = atoms_to_graph(ase.build.bulk("Cu", "fcc", 3.6, cubic=True))
    params = module.init(jax.random.key(0), graph)
    out = stage_breakdown(module, params, graph, step_ms=100.0, repeats=3)
    total = out["forward_ms"] + out["forces_stress_ms"] + out["param_gradient_and_update_ms"]
    assert total == pytest.approx(100.0)
    assert sum(out["share"].values()) == pytest.approx(1.0)
    assert out["forward_ms"] > 0
