"""Memory of one compiled step, two ways.

- `xla_memory`: XLA's own buffer assignment for a compiled function (arguments, outputs,
  temporaries). It needs only a compile, so it answers "does batch 40 fit" on any backend without
  running the step. The numbers are XLA's plan for *that* backend: GPU fusion differs from CPU
  fusion, so a CPU plan is an estimate of a GPU's.
- `PeakRSS`: the measured growth of the process's resident memory (Linux ``VmHWM``) while a block
  runs. It treats every framework alike (JAX on CPU, PyTorch on CPU), so two steps measured with it
  compare fairly. On a GPU the device's own counters are the measure; host RSS says little there.
"""

from __future__ import annotations

import ctypes
import gc
import re

_MB = 2**20
_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


def xla_memory(compiled) -> dict | None:
    """XLA's memory plan of ``compiled`` (``jax.jit(f).lower(...).compile()``), in MB:
    ``arguments``, ``outputs``, ``temp`` (live intermediates at their peak), ``aliased`` (outputs
    written into donated arguments) and ``total`` = arguments + outputs + temp − aliased.
    None where the backend gives no analysis."""
    try:
        m = compiled.memory_analysis()
        sizes = {
            "arguments": m.argument_size_in_bytes,
            "outputs": m.output_size_in_bytes,
            "temp": m.temp_size_in_bytes,
            "aliased": m.alias_size_in_bytes,
        }
    except Exception:  # noqa: BLE001 - some backends and versions report no analysis
        return None
    sizes["total"] = sizes["arguments"] + sizes["outputs"] + sizes["temp"] - sizes["aliased"]
    return {key: value / _MB for key, value in sizes.items()}


def _status_mb(field: str) -> float:
    with open(_STATUS) as f:
        match = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.MULTILINE)
    if match is None:
        raise OSError(f"no {field} in {_STATUS}")
    return int(match.group(1)) / 1024


def rss_supported() -> bool:
    """Whether `PeakRSS` can measure here: Linux with a resettable peak (``clear_refs``)."""
    try:
        _status_mb("VmHWM")
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _release_free_memory() -> None:
    """Collect garbage and hand malloc's free pages back to the OS, so that memory a block
    reuses from earlier work counts as growth instead of hiding in the baseline."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class PeakRSS:
    """Context manager: the process's peak resident memory growth (MB) while the block runs.

    ``with PeakRSS() as m: step()`` then ``m.growth_mb`` (peak RSS during the block minus RSS
    at its start) and ``m.baseline_mb``. Both are None where `rss_supported` is False. The block
    should block until its work is done (``jax.block_until_ready``). Other threads' allocations
    during the block count too, so measure with nothing else running in the process.
    """

    def __init__(self):
        self.baseline_mb: float | None = None
        self.growth_mb: float | None = None
        self._supported = rss_supported()

    def __enter__(self) -> PeakRSS:
        if self._supported:
            _release_free_memory()
            with open(_CLEAR_REFS, "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
            self.baseline_mb = _status_mb("VmRSS")
        return self

    def __exit__(self, *exc) -> None:
        if self._supported:
            self.growth_mb = max(_status_mb("VmHWM") - self.baseline_mb, 0.0)
