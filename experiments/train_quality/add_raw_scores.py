"""Add the raw-params (non-EMA) scores of equijax's runs to a train-quality JSON written before
`score_run` recorded them (emt_small.json), and recompute its summary.

    .venv/bin/python experiments/train_quality/add_raw_scores.py JSON RUN_ROOT
"""

import json
import sys

from equijax.bench import train_quality as tq

path, run_root = sys.argv[1], sys.argv[2]
results = json.loads(open(path).read())
for data, per_seed in results["runs"].items():
    n = results["datasets"][data]["n_structures"]
    config = tq.experiment_config(data, 0, f"{run_root}/{data}/seed0", n_structures=n)
    parts = tq.splits(config)
    for seed, record in per_seed.items():
        if "equijax" in record and "val_raw" not in record["equijax"]:
            scores = tq.score_run(f"{run_root}/{data}/seed{seed}", parts)
            assert abs(scores["val"]["mae_energy"] - record["equijax"]["val"]["mae_energy"]) < 1e-6
            record["equijax"] |= scores
            print(data, seed, scores["val_raw"], flush=True)
results["summary"] = tq.summarize(results["runs"])
open(path, "w").write(json.dumps(results, indent=1))
print(tq.markdown(results))
