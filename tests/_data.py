"""Where the shared corpora are: $ATTNKIT_DATA, else ../shared/data beside the repository."""

import os
from pathlib import Path

DATA = Path(os.environ.get("ATTNKIT_DATA") or
            Path(__file__).resolve().parents[1].parent / "shared" / "data")
