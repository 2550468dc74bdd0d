"""`equijax bench graphs` end to end, checked against ase and the PyTorch chgnet converter."""

import json

import numpy as np
from ase.neighborlist import neighbor_list

from equijax.bench.common import load_benchmark_structures
from equijax.cli import main

LIMIT = 24


def test_bench_graphs_cli_reports_reference_and_counts(tmp_path):
    """The CLI runs chgnet side by side, and its edge counts equal ase's neighbour lists."""
    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "bench",
                "graphs",
                "--rounds",
                "1",
                "--limit",
                str(LIMIT),
                "--batch-size",
                "4",
                "--global-batch",
                "24",
                "--devices",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    structures = load_benchmark_structures(LIMIT)
    ase_edges = [len(neighbor_list("i", a, 6.0)) for a in structures]
    assert result["n_structures"] == LIMIT
    assert np.isclose(result["mean_directed_edges"], np.mean(ase_edges))
    assert result["chgnet"]["available"], "the reference extra must be installed for the tests"
    assert result["chgnet"]["structures_per_s"] > 0
    assert result["multi_device"]["per_step_imbalance_max"] <= 1.05
    assert 0.0 <= result["single_device"]["padding_fraction"]["n_edge"] < 0.5
    assert result["machine"]["cpu_count"] >= 1
