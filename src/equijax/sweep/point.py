"""``python -m equijax.sweep.point DIR``: run one prepared sweep point (what the local launcher
starts in a child process; it inherits the ``equijax sweep`` process's thread settings)."""

import sys

from equijax.sweep.runner import run_point

if __name__ == "__main__":
    run_point(sys.argv[1])
