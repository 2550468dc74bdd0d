"""The symmetric contraction's hand-written backward against XLA's autodiff of the same forward,
in one run: forward, gradient (forces) and gradient of a gradient (force training) of
sum(out²), for 284 atoms x 32 channels of 0e+1o+2e+3o into 0e+1o, correlation 3.

Run:  .venv/bin/python experiments/mace/contraction_backward.py
Writes experiments/mace/contraction_backward.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np

from equijax.bench.common import machine_info
from equijax.nn import symmetric_contraction as sc

N, C, CORRELATION = 284, 32, 3
IRREPS = "0e+1o+2e+3o"


def autodiff_polynomials(x, key):
    """The same Φ as `symmetric_polynomials`, differentiated by XLA."""
    return sc.monomials(x, key[2]) @ jnp.asarray(sc._coefficients(*key), x.dtype)


def timed(fn, *args, steps=5) -> float:
    """Median seconds of the jitted ``fn`` after a warm-up."""
    fn = jax.jit(fn)
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    irreps_out = e3nn.Irreps(f"{C}x0e+{C}x1o")
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(N, C, 16)), jnp.float32)
    weights = {
        (str(ir), nu): jnp.asarray(
            rng.normal(size=(N, sc.num_couplings(IRREPS, ir, nu), C)), jnp.float32
        )
        for _, ir in irreps_out
        for nu in range(1, CORRELATION + 1)
    }
    rows = {}
    for name, poly in (
        ("hand-written", sc.symmetric_polynomials),
        ("autodiff", autodiff_polynomials),
    ):
        sc_poly = sc.symmetric_polynomials
        sc.symmetric_polynomials = poly  # cg_contraction looks it up at call time
        try:

            def f(x, w):
                return jnp.sum(sc.cg_contraction(x, w, IRREPS, irreps_out, CORRELATION).array ** 2)

            def g1(x, w):
                return jax.grad(f)(x, w)

            def g2(x, w):
                return jax.grad(lambda w: jnp.sum(jax.grad(f)(x, w) ** 2))(w)

            rows[name] = {
                "forward_s": timed(f, x, weights),
                "grad_s": timed(g1, x, weights),
                "grad_of_grad_s": timed(g2, x, weights),
            }
        finally:
            sc.symmetric_polynomials = sc_poly
        print(name, rows[name], flush=True)
    result = {"machine": machine_info(), "atoms": N, "channels": C, "rows": rows}
    out = Path(__file__).with_name("contraction_backward.json")
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
