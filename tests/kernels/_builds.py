"""What the build and cache tests of the compiled CPU kernel share: the kernel's source,
a call that loads it in a fresh process, fake compilers, and foreign files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from attnkit.kernels import cpu_additive

BUILT = cpu_additive.status()
needs_lib = pytest.mark.skipif(BUILT.lib is None, reason=f"no compiled kernel: {BUILT.detail}")
ROOT = Path(__file__).resolve().parents[2]
SOURCE = "additive_cpu.c"
#: Calls the kernel once in a fresh process and prints how it was obtained.
CALL = ("from attnkit.kernels import cpu_additive as c; import torch\n"
        "out = torch.empty(1, 1, 1)\n"
        "c.additive_scores(torch.ones(1, 1, 2), torch.zeros(1, 2, 1), torch.ones(2), out)\n"
        "print(round(out.item(), 5)); print(c.status().detail)\n")


def fake_cc(tmp_path: Path, body: str, name: str = "cc") -> Path:
    """A compiler script; ``--version`` answers ``fake-cc 1.0`` unless ``body`` handles it."""
    cc = tmp_path / name
    cc.write_text("#!/bin/sh\n" + body)
    cc.chmod(0o755)
    return cc


def run_call(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CALL], env={**env, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)


def make_foreign(path: Path, how: str) -> str:
    """Make ``path`` writable by the group, or (as root) owned by ``nobody``; returns the
    reason the build then gives."""
    if how == "group-writable":
        path.chmod(0o775)
        return "is writable by group or others (mode 775)"
    if os.getuid() != 0:
        pytest.skip("changing a file's owner needs root")
    os.chown(path, 65534, -1)
    return "belongs to user 65534"


def files(folder: Path) -> list[str]:
    return sorted(p.suffix for p in folder.iterdir() if p.name != ".lock")
