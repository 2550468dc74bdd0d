"""`equijax bench chgnet-infer` end to end: it runs both sides and reports their agreement."""

import json

import pytest

from equijax.cli import main

# jax_disable_most_optimizations (XLA backend -O0): about half the compile time; results agree
# to rounding (the tolerances here are far above it)
pytestmark = pytest.mark.usefixtures("fast_compiles")


def test_chgnet_infer_reports_throughput_and_agreement(tmp_path):
    """Both models run on the same batches; their predictions agree within parity tolerances."""
    out = tmp_path / "infer.json"
    assert (
        main(
            [
                "bench",
                "chgnet-infer",
                "--limit",
                "8",
                "--batch-size",
                "4",
                "--steps",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["chgnet"]["available"], "the reference extra must be installed for the tests"
    assert result["equijax"]["structures_per_s"] > 0 and result["chgnet"]["structures_per_s"] > 0
    diff = result["max_abs_difference_first_batch"]
    assert diff["energy_per_atom"] <= 2e-5 and diff["forces"] <= 2e-4
    assert diff["stress"] <= 2e-3 and diff["magmoms"] <= 2e-4
