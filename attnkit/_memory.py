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
import re
import resource
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Budget", "available_memory", "format_bytes", "plain_out_of_memory"]


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
