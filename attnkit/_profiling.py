"""Peak memory of a call, measured with the PyTorch profiler's allocation events."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable

import torch

__all__ = ["peak_memory_bytes"]


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (the profiler's C++ layer prints start/stop lines there)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):  # e.g. captured by a test runner
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def peak_memory_bytes(fn: Callable[[], object], *, no_grad: bool = True) -> int:
    """Peak of the running sum of CPU allocations made while ``fn()`` runs.

    Reads the profiler's ``[memory]`` events in time order; frees are negative.
    Tensors that exist before the call (inputs, parameters) are not counted;
    what ``fn`` returns is (it is still alive at the end).
    """
    from torch.profiler import ProfilerActivity, profile

    grad = torch.no_grad() if no_grad else contextlib.nullcontext()
    with _quiet_stderr(), grad, profile(activities=[ProfilerActivity.CPU],
                                        profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    live = peak = 0
    for _, n in events:
        live += n
        peak = max(peak, live)
    return peak
