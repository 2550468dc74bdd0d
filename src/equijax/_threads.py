"""Importing this module pins the numeric libraries' thread pools (OpenBLAS, MKL, OpenMP: numpy,
scipy, torch) to one thread unless the user set them, as the benchmarks' anchors were measured;
XLA keeps its own thread pool. It must run before those libraries load, which read the settings
once: the command line (`equijax.cli`) imports it first. Library users are not affected."""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
