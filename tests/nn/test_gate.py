"""`equijax.nn.gate` against e3nn (torch)'s ``Gate``: input layout, output values and irreps."""

from __future__ import annotations

import e3nn_jax as e3nn
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from e3nn import o3
from e3nn.math import normalize2mom
from e3nn.nn import Gate as TorchGate

from equijax.nn.gate import gate, gate_input_irreps, gate_output_irreps
from equijax.nn.normalized_activation import normalized_activation

F = torch.nn.functional
TORCH_ACTS = {"silu": F.silu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "abs": torch.abs}


def _jax_act(name: str):
    """jax activation scaled as torch's ``Gate`` scales it (normalize2mom); abs is not in
    `normalized_activation`, so its scale comes from torch and its function from jnp."""
    if name == "abs":
        cst = normalize2mom(torch.abs).cst
        return lambda x: cst * jnp.abs(x)
    return normalized_activation(name)


# irreps_out, scalar activation by parity, gate activation by parity of the gate scalars
CASES = {
    "o3_both_parities": ("8x0e+4x0o+3x1o+2x1e+2x2e+1x2o", ("silu", "tanh"), ("silu", "tanh")),
    "o3_sigmoid_gates": ("8x0e+4x0o+3x1o+2x1e+2x2e+1x2o", ("silu", "tanh"), ("sigmoid", "tanh")),
    "so3_even": ("16x0e+8x1e+4x2e", ("silu", "tanh"), ("silu", "tanh")),
    # no 0e scalar: the gates are 0o; an even gate activation keeps the gated parities
    "odd_gates": ("4x0o+2x1o+1x2e", ("silu", "tanh"), ("silu", "abs")),
}


def _torch_gate(irreps_out: str, scalar_acts, gate_acts) -> TorchGate:
    irreps = o3.Irreps(irreps_out)
    scalars = o3.Irreps([(mul, ir) for mul, ir in irreps if ir.l == 0])
    gated = o3.Irreps([(mul, ir) for mul, ir in irreps if ir.l > 0])
    gate_ir = "0e" if o3.Irrep("0e") in scalars else "0o"
    gates = o3.Irreps([(mul, gate_ir) for mul, _ in gated])
    even_s, odd_s = scalar_acts
    even_g, odd_g = gate_acts
    act_scalars = [TORCH_ACTS[even_s if ir.p == 1 else odd_s] for _, ir in scalars]
    act_gates = [TORCH_ACTS[even_g if ir.p == 1 else odd_g] for _, ir in gates]
    return TorchGate(scalars, act_scalars, gates, act_gates, gated)


def _as_jax(irreps) -> e3nn.Irreps:
    return e3nn.Irreps(str(irreps))


@pytest.mark.parametrize("case", list(CASES))
def test_gate_matches_torch(case):
    irreps_out, scalar_acts, gate_acts = CASES[case]
    ref = _torch_gate(irreps_out, scalar_acts, gate_acts)

    irreps_in = gate_input_irreps(irreps_out)
    assert irreps_in == _as_jax(ref.irreps_in)
    assert gate_output_irreps(irreps_out) == _as_jax(ref.irreps_out)

    x = np.random.default_rng(0).normal(size=(5, irreps_in.dim)).astype(np.float32)
    with torch.no_grad():
        want = ref(torch.tensor(x)).numpy()
    scalar_act = {1: _jax_act(scalar_acts[0]), -1: _jax_act(scalar_acts[1])}
    gate_act = {1: _jax_act(gate_acts[0]), -1: _jax_act(gate_acts[1])}
    got = gate(e3nn.IrrepsArray(irreps_in, jnp.asarray(x)), irreps_out, scalar_act, gate_act)
    assert got.irreps == gate_output_irreps(irreps_out)
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got.array), want, atol=1e-5, rtol=1e-5)


def test_gate_wrong_input_size_raises():
    irreps_out = "8x0e+4x0o+3x1o+2x1e+2x2e+1x2o"
    acts = {1: normalized_activation("silu"), -1: normalized_activation("tanh")}
    dim = gate_input_irreps(irreps_out).dim
    for wrong in (e3nn.Irreps(irreps_out), e3nn.Irreps(f"{dim - 1}x0e")):
        x = e3nn.IrrepsArray(wrong, jnp.ones((2, wrong.dim)))
        with pytest.raises(ValueError, match="gate input"):
            gate(x, irreps_out, acts, acts)
