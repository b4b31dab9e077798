"""How much memory this process may still take, and sizes in words.

Commands compare an estimate of what a job needs with :func:`available_memory`
before they allocate, so that a size that cannot fit is refused in one line
instead of failing seconds later deep inside an allocator (or growing until the
kernel kills the process).

Each limit that applies is read and the smallest wins:

* ``MemAvailable`` of ``/proc/meminfo``: what the kernel can hand out without
  swapping;
* ``RLIMIT_AS`` (``ulimit -v``): the address space this process may map, less
  what it maps already (``VmSize``);
* the memory limit of this process's cgroup (v2 ``memory.max`` less
  ``memory.current``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import resource
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Budget", "available_memory", "format_bytes", "keep_freed_memory",
           "plain_out_of_memory"]


@dataclass(frozen=True)
class Budget:
    """Bytes this process may still allocate, and which limit says so."""

    bytes: int
    source: str  # e.g. "MemAvailable in /proc/meminfo"


def format_bytes(n: int | float) -> str:
    """``n`` bytes in binary units with one decimal: ``1.5 GiB``."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    value, unit = float(n), units[0]
    for unit in units:
        if abs(value) < 1024 or unit == units[-1]:
            break
        value /= 1024
    return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"


def _kib_field(path: str, key: str) -> int | None:
    """The ``key:  N kB`` line of a ``/proc`` file, in bytes (``None`` when absent)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _address_space() -> Budget | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    mapped = _kib_field("/proc/self/status", "VmSize") or 0
    return Budget(max(0, soft - mapped), f"RLIMIT_AS (ulimit -v) of {format_bytes(soft)}, "
                                         f"{format_bytes(mapped)} of it mapped")


def _cgroup() -> Budget | None:
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        rel = next(x.split(":", 2)[2] for x in lines if x.startswith("0::"))
        folder = Path("/sys/fs/cgroup") / rel.lstrip("/")
        limit = (folder / "memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int((folder / "memory.current").read_text())
    except (OSError, ValueError, StopIteration, IndexError):
        return None
    return Budget(max(0, int(limit) - used), f"the cgroup's memory.max of "
                                             f"{format_bytes(int(limit))}")


def available_memory() -> Budget | None:
    """The smallest of the limits above (``None`` when none can be read)."""
    budgets = [_address_space(), _cgroup()]
    free = _kib_field("/proc/meminfo", "MemAvailable")
    if free is not None:
        budgets.append(Budget(free, "MemAvailable in /proc/meminfo"))
    known = [b for b in budgets if b is not None]
    return min(known, key=lambda b: b.bytes) if known else None


_ALLOCATOR = re.compile(r"can't allocate memory: you tried to allocate (\d+) bytes")


@contextlib.contextmanager
def plain_out_of_memory(doing: str):
    """PyTorch's allocator failure (a ``RuntimeError`` with a C++ trace) inside the block
    becomes a :class:`MemoryError` in one line: what was being done, how much was asked
    and what this process may use; the estimates that refuse a job up front are lower
    bounds, so a job they let through can still run out."""
    try:
        yield
    except RuntimeError as e:
        m = _ALLOCATOR.search(str(e))
        if m is None:
            raise
        budget = available_memory()
        left = "" if budget is None else (f"; this process may use "
                                          f"{format_bytes(budget.bytes)} more ({budget.source})")
        raise MemoryError(f"out of memory {doing}: could not allocate "
                          f"{format_bytes(int(m.group(1)))}{left}") from None


#: glibc's ``mallopt`` parameters (``<malloc.h>``) and the values :func:`keep_freed_memory`
#: sets: blocks up to 64 MiB come from the heap, and up to 256 MiB of free heap stays
#: mapped (glibc's defaults start at 128 KiB and move with what is freed)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD, TRIM_THRESHOLD = 64 << 20, 256 << 20
_KEPT: list[str] = []  # what keep_freed_memory did, once per process
_KEEP_LOCK = threading.Lock()


def keep_freed_memory() -> str:
    """Ask the C library's ``malloc`` to keep the memory PyTorch frees for its next tensors
    instead of handing it back to the kernel, once per process; returns what was done.

    A CPU tensor of more than glibc's moving threshold (128 KiB to start with) is mapped
    fresh from the kernel and unmapped when freed, and the free top of the heap is given
    back past a second threshold: then every step of a training or a search writes its
    large tensors into new pages, and the kernel zeroes each page at its first touch
    (about 170,000 page faults per six training steps of the shipped Multi30k model). With
    ``mallopt`` raising both thresholds (:data:`MMAP_THRESHOLD`, :data:`TRIM_THRESHOLD`)
    those blocks are reused: training steps measured 1.13-1.2x and beam search 1.07x
    (BENCHMARKS.md, "Decoding with the compiled step kernel"), at the same peak memory.
    The process keeps up to 256 MiB of freed heap for itself.

    Only glibc has ``mallopt``; elsewhere nothing is done. ``ATTNKIT_MALLOC=system``
    leaves ``malloc`` as it is (``keep``, the default, or unset: set the thresholds);
    another value is reported in a warning and changes nothing.
    """
    with _KEEP_LOCK:
        if not _KEPT:
            _KEPT.append(_keep())
        return _KEPT[0]


def _keep() -> str:
    setting = os.environ.get("ATTNKIT_MALLOC", "").strip().lower() or "keep"
    if setting == "system":
        return "malloc as the C library sets it (ATTNKIT_MALLOC=system)"
    if setting != "keep":
        warnings.warn(f"ATTNKIT_MALLOC={os.environ['ATTNKIT_MALLOC']!r} is not 'keep' or "
                      "'system'; malloc is left as the C library sets it", stacklevel=3)
        return "malloc as the C library sets it (ATTNKIT_MALLOC not understood)"
    try:  # the C library already loaded in this process (find_library would run ldconfig)
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return "malloc as the C library sets it (no glibc mallopt here)"
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not (mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD,
                                                                    TRIM_THRESHOLD)):
        return "malloc as the C library sets it (mallopt refused the thresholds)"
    return (f"malloc keeps freed memory (blocks up to {format_bytes(MMAP_THRESHOLD)} from "
            f"the heap, up to {format_bytes(TRIM_THRESHOLD)} of it kept)")
