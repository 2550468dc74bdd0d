"""Peak memory and time of one energy + forces + stress call of the pretrained CHGNet 0.3.0 on a
rattled fcc Cu cell, with and without `Potential`'s memory-lean mode, each in a fresh process.

    python experiments/chgnet_md/lean_memory.py 256 2048 4000 [--modes plain,lean] [--out F]

Peak RSS is the process's maximum resident set (GB of 1e9 bytes, from ``ru_maxrss``); the time
is the second call (after the compile), with the positions moved by 0.01 Å.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import json, resource, sys, time
from equijax.bench.md import cu_cell
from equijax.calculators import EquijaxCalculator
n, mode = int(sys.argv[1]), sys.argv[2]
atoms = cu_cell(n)
atoms.calc = EquijaxCalculator.from_pretrained("0.3.0", lean=mode == "lean")
energy = atoms.get_potential_energy(); atoms.get_forces(); atoms.get_stress()
atoms.rattle(0.01, seed=1)
t0 = time.perf_counter(); atoms.get_forces(); atoms.get_stress(); seconds = time.perf_counter() - t0
print(json.dumps({"atoms": n, "mode": mode, "energy_per_atom_eV": energy / n,
                  "seconds_per_call": seconds,
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("atoms", type=int, nargs="+", help="cell sizes (multiples of 4)")
    parser.add_argument("--modes", default="plain,lean", help="subset of plain,lean")
    parser.add_argument("--out", default=None, help="JSON output path")
    args = parser.parse_args()
    rows = []
    for n in args.atoms:
        for mode in args.modes.split(","):
            done = subprocess.run(
                [sys.executable, "-c", CHILD, str(n), mode], capture_output=True, text=True
            )
            if done.returncode != 0:
                row = {
                    "atoms": n,
                    "mode": mode,
                    "error": f"exit {done.returncode} (out of memory?)",
                }
            else:
                row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(row, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
