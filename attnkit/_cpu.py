"""Facts about this CPU, torch's thread setting held for a while, and where attnkit may cache
per-machine results (imports nothing above)."""

from __future__ import annotations

import contextlib
import contextvars
import os
import platform
from pathlib import Path

import torch

__all__ = ["cache_dir", "call_threads", "cpu_flags", "cpu_model", "pinned_threads",
           "pinning_allowed", "torch_threads"]

#: Whether calls made in this context may pin torch's thread setting (:func:`pinned_threads`).
#: Per context, not per process: a library call from any other thread leaves it alone.
_PINNING: contextvars.ContextVar[bool] = contextvars.ContextVar("attnkit_pinning", default=False)


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


@contextlib.contextmanager
def pinned_threads():
    """Let attnkit's CPU backends pin torch's thread setting during their calls in this
    block (:func:`call_threads`): ``chunked`` and ``sdpa`` then share a call's independent
    pieces among worker threads, as many as torch's setting, each running its ops on one
    intra-op thread, and hold the process-wide setting at 1 until the call returns. Outside
    such a block a call leaves the setting untouched and runs its pieces on this thread."""
    token = _PINNING.set(True)
    try:
        yield
    finally:
        try:
            _PINNING.reset(token)
        except ValueError:  # left in another context than it was entered (another thread)
            _PINNING.set(token.old_value is True)


def pinning_allowed() -> bool:
    """Whether this call runs inside :func:`pinned_threads`."""
    return _PINNING.get()


def call_threads(n: int | None):
    """:func:`torch_threads` for the length of one library call, inside
    :func:`pinned_threads` only; elsewhere torch's setting is left as it is."""
    return torch_threads(n if pinning_allowed() else None)


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
