"""``equijax train`` that stops, alive, at a known point so a test can SIGKILL it there.

Usage: ``python train_hang.py CALL MARKER -- ARGS...``: runs ``equijax.cli.main(ARGS)`` with the
train step wrapped so that its CALL-th invocation (1-based) writes MARKER and then sleeps forever
instead of running (steps 1..CALL-1 have completed, their metrics and checkpoints are written).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import equijax.training.loop as loop
from equijax.cli import main


def install(hang_at: int, marker: Path) -> None:
    make_train_step = loop.make_train_step

    def patched(*args, **kwargs):
        step = make_train_step(*args, **kwargs)
        calls = 0

        def wrapped(state, graph, targets):
            nonlocal calls
            calls += 1
            if calls == hang_at:
                marker.write_text(str(calls))
                while True:
                    time.sleep(1)
            return step(state, graph, targets)

        return wrapped

    loop.make_train_step = patched


if __name__ == "__main__":
    sep = sys.argv.index("--")
    install(int(sys.argv[1]), Path(sys.argv[2]))
    sys.exit(main(sys.argv[sep + 1 :]))
