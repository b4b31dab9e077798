"""``attnkit._memory.keep_freed_memory``: the C library's malloc keeps freed memory for the
next tensors (the budgets of the same module are tested through the commands' size checks,
``tests/commands/test_sizes.py``).

Each case runs in a fresh process: the setting is process-wide and not undone.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import platform
import subprocess
import sys

import pytest

GLIBC = platform.libc_ver()[0] == "glibc"

#: Faults in five 48 MiB tensors, each made and freed, after ten such to settle the heap.
#: By default glibc maps every block past 32 MiB (its largest moving threshold) anew, so
#: each is faulted in; kept, freed blocks are reused (once torch's aligned requests have
#: found a free block large enough: a few tensors).
PROBE = """
import json, resource, sys, warnings
import torch
from attnkit._memory import keep_freed_memory
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    said = keep_freed_memory()
    again = keep_freed_memory()
for _ in range(10):
    torch.ones(12 << 20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    torch.ones(12 << 20)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
warned = [str(w.message) for w in seen]
print(json.dumps(dict(said=said, again=again, faults=faults, warned=warned)))
"""


def _probe(setting: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "ATTNKIT_MALLOC"}
    if setting is not None:
        env["ATTNKIT_MALLOC"] = setting
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC or ctypes.util.find_library("c") is None,
                    reason="mallopt is glibc's")
def test_freed_tensors_are_reused_instead_of_faulted_in_again():
    kept = _probe(None)
    assert kept["said"].startswith("malloc keeps freed memory") and kept["again"] == kept["said"]
    system = _probe("system")
    assert system["said"] == "malloc as the C library sets it (ATTNKIT_MALLOC=system)"
    pages = (48 << 20) // os.sysconf("SC_PAGE_SIZE")  # of one tensor
    assert system["faults"] >= 5 * pages * 0.9, system  # each tensor faulted in anew
    assert kept["faults"] < pages // 10, kept  # freed ones reused


def test_an_unknown_setting_is_reported_and_changes_nothing():
    out = _probe(" Keep-It ")
    assert out["said"] == "malloc as the C library sets it (ATTNKIT_MALLOC not understood)"
    assert out["warned"] == ["ATTNKIT_MALLOC=' Keep-It ' is not 'keep' or 'system'; malloc is "
                             "left as the C library sets it"]
    assert _probe(" KEEP ")["said"].startswith("malloc keeps freed memory")


def test_jobs_that_hold_threads_keep_freed_memory():
    code = ("import attnkit._memory as m; from attnkit.runtime import held_threads\n"
            "with held_threads(None): print(bool(m._KEPT))\n"
            "with held_threads(1): print(m._KEPT[0][:26])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True, env={k: v for k, v in os.environ.items()
                                                        if k != "ATTNKIT_MALLOC"})
    assert done.stdout.split("\n")[:2] == ["False", "malloc keeps freed memory "]
