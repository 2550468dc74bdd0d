"""``python -m equijax.cli ...``: the `equijax` command."""

import sys

from equijax.cli import main

sys.exit(main())
