"""Facts about this CPU and where attnkit may cache per-machine results (imports nothing above)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["cache_dir", "cpu_flags", "cpu_model"]


def cpu_flags() -> set[str]:
    """The CPU's feature flags (``/proc/cpuinfo``; empty where that file does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((x for x in text.splitlines() if x.startswith(("flags", "Features"))), "")
    return set(line.partition(":")[2].split())


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    line = next((x for x in text.splitlines() if x.startswith("model name")), "")
    return line.partition(":")[2].strip() or platform.machine()


def cache_dir() -> Path:
    """``$ATTNKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/attnkit``, else ``~/.cache/attnkit``."""
    own = os.environ.get("ATTNKIT_CACHE_DIR")
    if own:
        return Path(own)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "attnkit"
