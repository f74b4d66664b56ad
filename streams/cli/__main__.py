"""``python -P -m streams.cli``: the ``vitals`` command (how vitals starts its own children)."""

import sys

from streams.cli import main

sys.exit(main())
