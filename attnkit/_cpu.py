"""Facts about this CPU, torch's thread setting held for a while, and where attnkit may cache
per-machine results (imports nothing above)."""

from __future__ import annotations

import contextlib
import contextvars
import os
import platform
import threading
from pathlib import Path

import torch

__all__ = ["cache_dir", "call_threads", "cpu_flags", "cpu_model", "pinned_threads",
           "pinning_allowed", "torch_threads"]

#: How many :func:`pinned_threads` blocks are open in this context: calls made in it may pin
#: torch's thread setting while one is. Per context, not per process: a library call from
#: any other thread leaves it alone.
_PINNING: contextvars.ContextVar[int] = contextvars.ContextVar("attnkit_pinning", default=0)
#: The open holds of :func:`torch_threads` in the process, oldest first: ``(token, n)``
_HOLDS: list[tuple[object, int]] = []
#: torch's setting before the first of the open holds
_BEFORE_HOLDS: list[int] = []
_HOLDS_LOCK = threading.Lock()


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Hold torch's intra-op thread setting at ``n`` (``None``: leave it); given back
    afterwards. The setting is process-wide, not per thread, so the holds of the whole
    process are kept together: while any is open the setting is the latest open one's,
    and when the last closes it is what it was before the first. Holds may close in any
    order (two trainers closed in the order they were made, calls of several threads)
    without one giving back a setting another still holds."""
    if n is None:
        yield
        return
    token = object()
    with _HOLDS_LOCK:
        if not _HOLDS:
            _BEFORE_HOLDS[:] = [torch.get_num_threads()]
        _HOLDS.append((token, n))
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
    try:
        yield
    finally:
        with _HOLDS_LOCK:
            _HOLDS[:] = [hold for hold in _HOLDS if hold[0] is not token]
            wanted = _HOLDS[-1][1] if _HOLDS else _BEFORE_HOLDS[0]
            if torch.get_num_threads() != wanted:
                torch.set_num_threads(wanted)


@contextlib.contextmanager
def pinned_threads():
    """Let attnkit's CPU backends pin torch's thread setting during their calls in this
    block (:func:`call_threads`): ``chunked`` and ``sdpa`` then share a call's independent
    pieces among worker threads, as many as torch's setting, each running its ops on one
    intra-op thread, and hold the process-wide setting at 1 until the call returns. Outside
    such a block a call leaves the setting untouched and runs its pieces on this thread."""
    _PINNING.set(_PINNING.get() + 1)  # a depth: blocks may close in any order
    try:
        yield
    finally:
        _PINNING.set(max(_PINNING.get() - 1, 0))  # (0 if left in another context)


def pinning_allowed() -> bool:
    """Whether this call runs inside :func:`pinned_threads`."""
    return _PINNING.get() > 0


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
