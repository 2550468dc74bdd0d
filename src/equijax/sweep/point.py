"""``python -m equijax.sweep.point DIR``: run one prepared sweep point (what the local launcher
starts in a child process)."""

import sys

if __name__ == "__main__":
    from equijax.cli import _single_thread

    _single_thread()
    from equijax.sweep.runner import run_point

    run_point(sys.argv[1])
