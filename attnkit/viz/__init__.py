"""Pictures of attention: the interactive HTML explorer (``attnkit.viz.explorer``).

Submodules are imported lazily, so ``import attnkit.viz`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "AttentionRecord": "attnkit.viz.explorer",
    "explorer_html": "attnkit.viz.explorer",
    "records_from_captures": "attnkit.viz.explorer",
    "write_explorer": "attnkit.viz.explorer",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'attnkit.viz' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
