"""matplotlib, loaded on first use with a backend that works everywhere.

The figures of :mod:`attnkit.viz` and :mod:`attnkit.d2l` draw with ``pyplot``: on a
machine without a display that is the non-interactive Agg backend; inside a Jupyter
kernel (``MPLBACKEND`` names the inline backend) figures keep showing inline.
"""

from __future__ import annotations

import os

__all__ = ["pyplot"]


def pyplot():
    """``matplotlib.pyplot``, imported now (importing it picks a backend: Agg unless a
    notebook's inline backend is set)."""
    import matplotlib

    if "inline" not in os.environ.get("MPLBACKEND", ""):  # a notebook keeps its backend
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt
