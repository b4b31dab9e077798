"""``python -m attnkit.bench SUITE ...``: the same as ``attnkit bench SUITE ...``."""

import sys

from ..cli import main

raise SystemExit(main(["bench", *sys.argv[1:]]))
