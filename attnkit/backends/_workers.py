"""Worker threads for the independent pieces of one call (``chunked``'s blocks, ``sdpa``'s
groups of sequences).

Each worker runs its pieces with one intra-op thread, in parallel with the others (torch
ops release the GIL). Against torch's own multi-threaded ops this trades a barrier at the
end of every op for one join at the end of the call: on a machine where another process
holds a core, a descheduled thread then delays only the join instead of every op. The
threads are kept between calls (a pool; a forked child makes its own).

Workers need torch's thread setting, which is process-wide, held at 1 while they run: so
they are used only inside :func:`attnkit.runtime.pinned_threads` (which the commands, the
trainer and the benchmarks enter); elsewhere a call runs its pieces on the calling thread
with torch's own threads and leaves the setting alone.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from collections.abc import Callable, Sequence

import torch

from .._cpu import call_threads, pinning_allowed

__all__ = ["balance", "in_workers", "pool", "worker_count"]

_POOL_LOCK = threading.Lock()
_POOL: dict = {}  # "pool", "size", "pid"


def worker_count(pieces: int) -> int:
    """Worker threads for a call of ``pieces`` independent pieces: inside
    :func:`attnkit.runtime.pinned_threads`, as many as torch's thread setting (at most
    ``pieces``); elsewhere 1, the calling thread."""
    return max(1, min(torch.get_num_threads(), pieces)) if pinning_allowed() else 1


def in_workers(runs: Sequence, job: Callable, *, grad: bool = False) -> list:
    """``[job(run) for run in runs]``, one worker thread per run (the calling thread for a
    single run, or outside :func:`attnkit.runtime.pinned_threads`), with autograd recording
    on (``grad``) or off in each worker, and the caller's inference mode (both are per
    thread: a worker would otherwise refuse to write into tensors made under
    ``torch.inference_mode``). Torch's thread setting is held at 1 while the workers run
    (:func:`attnkit._cpu.call_threads`), so each op runs on its worker's thread alone."""
    inference = torch.is_inference_mode_enabled()

    def one(run):
        with torch.inference_mode(inference), torch.set_grad_enabled(grad and not inference):
            return job(run)

    if len(runs) <= 1 or not pinning_allowed():
        return [one(r) for r in runs]
    with call_threads(1):
        return list(pool(len(runs)).map(one, runs))


def balance(work: Sequence[float], n: int) -> list[list[int]]:
    """Indices of ``work`` in ``n`` runs of about equal total: the largest piece first to the
    least loaded run (LPT); each run keeps its pieces in index order; empty runs dropped."""
    runs: list[list[int]] = [[] for _ in range(max(1, n))]
    load = [0.0] * len(runs)
    for i in sorted(range(len(work)), key=lambda i: (-work[i], i)):
        j = min(range(len(runs)), key=lambda j: (load[j], j))
        runs[j].append(i)
        load[j] += work[i]
    return [sorted(r) for r in runs if r]


def pool(n: int) -> concurrent.futures.ThreadPoolExecutor:
    """A thread pool of at least ``n`` workers, kept between calls (starting threads for
    every call cost about a millisecond each); made anew in a forked child, where the
    parent's threads do not exist."""
    with _POOL_LOCK:
        if _POOL.get("pid") != os.getpid() or _POOL.get("size", 0) < n:
            old = _POOL.get("pool") if _POOL.get("pid") == os.getpid() else None
            _POOL.update(pool=concurrent.futures.ThreadPoolExecutor(
                max_workers=n, thread_name_prefix="attnkit-worker"), size=n, pid=os.getpid())
            if old is not None:
                old.shutdown(wait=False)
        return _POOL["pool"]
