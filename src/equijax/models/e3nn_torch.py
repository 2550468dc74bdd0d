"""Converting e3nn (torch) weights, shared by the converters of torch models built on e3nn
(sevenn, mace-torch)."""

from __future__ import annotations

import e3nn_jax as e3nn
import jax
import numpy as np


def linear_params(flat: np.ndarray, irreps_in, irreps_out) -> dict:
    """e3nn (torch) ``Linear``'s flat weight -> `e3nn_jax.flax.Linear` params.

    Torch keeps one (mul_in, mul_out) block per pair of equal irreps, in (input, output) block
    order; e3nn-jax keeps one matrix per irrep of the regrouped input and output, whose rows and
    columns are those blocks in the same order.
    """
    irreps_in, irreps_out = e3nn.Irreps(irreps_in), e3nn.Irreps(irreps_out)
    reg_in, reg_out = irreps_in.regroup(), irreps_out.regroup()
    matrices = {
        ir: np.zeros((reg_in.count(ir), reg_out.count(ir)), flat.dtype)
        for _, ir in reg_in
        if ir in [o for _, o in reg_out]
    }
    row_start = {ir: 0 for ir in matrices}
    offset = 0
    for mul_in, ir_in in irreps_in:
        col = 0
        for mul_out, ir_out in irreps_out:
            if ir_in != ir_out:
                continue
            size = mul_in * mul_out
            block = flat[offset : offset + size].reshape(mul_in, mul_out)
            r = row_start[ir_in]
            matrices[ir_in][r : r + mul_in, col : col + mul_out] = block
            offset += size
            col += mul_out
        if ir_in in row_start:
            row_start[ir_in] += mul_in
    if offset != flat.size:
        raise ValueError(f"linear {irreps_in} -> {irreps_out}: {flat.size} weights, used {offset}")
    # the names e3nn-jax gives its matrices ("w[a,b] 8x1o,16x1o"), one per irrep here
    module = e3nn.flax.Linear(irreps_out, force_irreps_out=True)
    dummy = e3nn.zeros(irreps_in, (1,))
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), dummy)["params"]
    params = {}
    for name, shape in shapes.items():
        ir = e3nn.Irrep(name.split(" ")[1].split(",")[0].split("x")[1])
        if matrices[ir].shape != shape.shape or name in params:
            raise ValueError(f"linear {irreps_in} -> {irreps_out}: cannot place {name}")
        params[name] = matrices[ir]
    if len(params) != len(matrices):
        raise ValueError(f"linear {irreps_in} -> {irreps_out}: irreps without a matrix")
    return params
