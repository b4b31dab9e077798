"""Facts about this CPU, torch's thread setting held for a while, and where attnkit may cache
per-machine results (imports nothing above)."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

import torch

__all__ = ["cache_dir", "cpu_flags", "cpu_model", "torch_threads"]


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Hold torch's intra-op thread setting at ``n`` (``None``: leave it); restored
    afterwards. The setting is process-wide, not per thread."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
    """``$ATTNKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/attnkit``, else ``~/.cache/attnkit``;
    absolute: a relative ``ATTNKIT_CACHE_DIR`` is taken from the working directory now (and
    ``~`` expanded), a relative ``XDG_CACHE_HOME`` is ignored, as its specification says."""
    own = os.environ.get("ATTNKIT_CACHE_DIR", "").strip()
    if own:
        return Path(own).expanduser().absolute()
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = Path.home() / ".cache"
    return Path(base) / "attnkit"
