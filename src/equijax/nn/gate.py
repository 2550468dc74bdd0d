"""e3nn's ``Gate`` in torch's layout: scalars are activated, and every non-scalar channel is
multiplied by its own activated gate scalar.

Torch's ``Gate`` takes its input sorted by irrep and merged (``(scalars + gates + gated).sort()
.simplify()``), so the gate scalars sit among the other scalars of the same irrep; e3nn-jax's
``gate`` instead expects the gates last. This one follows torch, so converted weights feeding
it need no permutation.
"""

from __future__ import annotations

from collections.abc import Callable

import e3nn_jax as e3nn
import jax.numpy as jnp

from equijax.nn.uvu import e3nn_torch_order


def _blocks(irreps_out: e3nn.Irreps) -> list[tuple[str, int, e3nn.Irrep]]:
    """(role, mul, irrep) of the gate's input blocks before sorting: scalars, gates, gated."""
    irreps_out = e3nn.Irreps(irreps_out)
    scalars = [("scalar", mul, ir) for mul, ir in irreps_out if ir.l == 0]
    gated = [("gated", mul, ir) for mul, ir in irreps_out if ir.l > 0]
    gate_ir = e3nn.Irrep("0e" if any(ir == e3nn.Irrep("0e") for _, _, ir in scalars) else "0o")
    return scalars + [("gate", mul, gate_ir) for _, mul, _ in gated] + gated


def _order(blocks) -> list[int]:
    """Block indices sorted stably by irrep as e3nn (torch) sorts: by l, odd before even."""
    return sorted(range(len(blocks)), key=lambda b: e3nn_torch_order(blocks[b][2]))


def gate_input_irreps(irreps_out) -> e3nn.Irreps:
    """The irreps a gate with output ``irreps_out`` takes: sorted and simplified as torch's."""
    blocks = _blocks(irreps_out)
    return e3nn.Irreps([(blocks[b][1], blocks[b][2]) for b in _order(blocks)]).simplify()


def gate_output_irreps(irreps_out) -> e3nn.Irreps:
    """The gate's output irreps: the scalars of ``irreps_out``, then its non-scalars."""
    irreps_out = e3nn.Irreps(irreps_out)
    return e3nn.Irreps(
        [(m, ir) for m, ir in irreps_out if ir.l == 0]
        + [(m, ir) for m, ir in irreps_out if ir.l > 0]
    )


def gate(
    x: e3nn.IrrepsArray,
    irreps_out,
    scalar_act: dict[int, Callable],
    gate_act: dict[int, Callable],
) -> e3nn.IrrepsArray:
    """Apply the gate of output ``irreps_out`` to ``x`` (..., `gate_input_irreps`).

    ``scalar_act`` / ``gate_act`` map a parity (1 or -1) to the activation of scalars of that
    parity (already scaled, e.g. `equijax.nn.normalized_activation`); odd gates (an output
    without 0e scalars) need an even gate activation. Returns (...,
    `gate_output_irreps`).
    """
    blocks = _blocks(irreps_out)
    order = _order(blocks)
    offsets, position = {}, 0
    for b in order:
        offsets[b] = position
        position += blocks[b][1] * blocks[b][2].dim
    if position != x.irreps.dim:
        raise ValueError(f"gate input has {x.irreps}, expected {gate_input_irreps(irreps_out)}")
    lead = x.shape[:-1]

    def piece(b):
        _, mul, ir = blocks[b]
        return x.array[..., offsets[b] : offsets[b] + mul * ir.dim].reshape(lead + (mul, ir.dim))

    scalars = [b for b, (role, _, _) in enumerate(blocks) if role == "scalar"]
    gates = [b for b, (role, _, _) in enumerate(blocks) if role == "gate"]
    gated = [b for b, (role, _, _) in enumerate(blocks) if role == "gated"]
    if gates and blocks[gates[0]][2].p == -1:
        probe = jnp.linspace(0.1, 2.0, 5)
        if not jnp.allclose(gate_act[-1](probe), gate_act[-1](-probe)):
            raise ValueError(
                "odd (0o) gates need an even gate activation (e.g. abs): an odd one would flip "
                "the parity of the gated irreps"
            )
    out = [scalar_act[blocks[b][2].p](piece(b)) for b in scalars]
    for g, v in zip(gates, gated):
        out.append(piece(v) * gate_act[blocks[g][2].p](piece(g)))
    irreps = e3nn.Irreps([(blocks[b][1], blocks[b][2]) for b in scalars + gated])
    return e3nn.IrrepsArray(irreps, jnp.concatenate([o.reshape(lead + (-1,)) for o in out], -1))
