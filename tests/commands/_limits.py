"""Real memory limits for the command-line tests: ``RLIMIT_AS`` on a child process (set in
``preexec_fn``) or, for in-process runs, on this process for the length of a block."""

import contextlib
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GiB = 1 << 30
# address space a child may map: python and torch take part of it (one thread, two
# malloc arenas), the rest is the job's: far from what the sizes refused here need
CHILD_LIMIT = 3 * GiB
# one thread and few malloc arenas keep a child's address space the same on every machine
CHILD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2",
             "PYTHONUNBUFFERED": "1"}


def limit_address_space(limit: int):
    """A ``preexec_fn`` that caps the child's address space at ``limit`` bytes."""
    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(
            resource.RLIMIT_AS)[1]))
    return apply


def child_env() -> dict:
    return {**os.environ, **CHILD_ENV}


def attnkit_command(*argv: str) -> list[str]:
    return [sys.executable, "-m", "attnkit.cli", *argv]


def run_limited(argv: list[str], *, limit: int = CHILD_LIMIT, timeout: float = 240,
                stdin: bytes | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """``attnkit ARGV`` in a child under ``RLIMIT_AS = limit``; (result, seconds)."""
    started = time.monotonic()
    res = subprocess.run(attnkit_command(*argv), cwd=ROOT, env=child_env(), input=stdin,
                         capture_output=True, timeout=timeout,
                         preexec_fn=limit_address_space(limit))
    return res, time.monotonic() - started


def mapped_bytes() -> int:
    """This process's address space now (``VmSize``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize in /proc/self/status")


@contextlib.contextmanager
def address_space_headroom(headroom: int):
    """This process may map only ``headroom`` more bytes inside the block (the soft
    ``RLIMIT_AS``; the hard limit is untouched, so the old one comes back after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (mapped_bytes() + headroom, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
