"""Same-process A/B of one energy + forces + stress call: the plain CHGNet against the pair-free
lean mode at several piece sizes (`lean_chunk`), on a rattled fcc Cu cell.

    python experiments/chgnet_md/lean_vs_plain.py 64 512

Prints the median seconds per `Potential.predict` call (graph building included) over 3 rattled
copies, three rounds interleaved so that a busy machine affects every variant alike.
"""

from __future__ import annotations

import dataclasses
import sys
import time

import numpy as np

from equijax.bench.md import cu_cell
from equijax.potential import Potential

VARIANTS = (("plain", False, 0), ("pf-2k", True, 2048), ("pf-4k", True, 4096), ("pf-16k", True, 16384))


def main() -> None:
    base = Potential.from_pretrained("0.3.0")
    for n in [int(a) for a in sys.argv[1:]] or [64, 512]:
        atoms = cu_cell(n)
        potentials = {}
        for label, lean, chunk in VARIANTS:
            config = dataclasses.replace(base.module.config, lean_chunk=chunk)
            potentials[label] = Potential(base.module.clone(config=config), base.params, lean=lean)
            potentials[label].predict(atoms)  # compile
        for round_ in range(3):
            for label, potential in potentials.items():
                times = []
                for k in range(3):
                    moved = atoms.copy()
                    moved.rattle(0.01, seed=k)
                    t0 = time.perf_counter()
                    potential.predict(moved)
                    times.append(time.perf_counter() - t0)
                print(f"{n} atoms, round {round_}: {label} {np.median(times):.3f} s", flush=True)


if __name__ == "__main__":
    main()
