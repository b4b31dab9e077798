"""What this machine runs fast: precision and threads chosen by measurement, not assumption.

* :func:`choose_precision` — bf16 autocast only where the device runs it fast:
  CUDA devices that support bf16; CPUs with native bf16 (AMX or AVX-512-BF16
  in ``/proc/cpuinfo``), or whose short, cached micro-benchmark shows a bf16
  matmul faster than fp32. On a CPU without native bf16 (AVX2, or AVX-512
  without its BF16 extension) PyTorch falls back to a slow path (BENCHMARKS.md
  has the figures). ``ATTNKIT_CPU_BF16=native|none`` substitutes the CPU's
  answer (as if it ran bf16 natively, or had no fast bf16 at all), so that a
  machine can check what another kind of CPU would choose and run.
* :func:`choose_threads` — OpenMP threads that survive a shared machine: as
  many as there are cores not already busy with other running processes
  (read from ``/proc/loadavg``, sampled a few times), at least one. Two
  threads on two cores collapse when another process holds one of them (each
  parallel region waits for the descheduled thread); one thread does not.
* :func:`held_threads` / :func:`pinned_threads` — the only ways attnkit changes torch's
  process-wide thread setting, both entered by the caller: a library call outside them
  (``attnkit.attention``, a model's forward) leaves the setting as it finds it.
* :func:`machine` — the facts every benchmark row records.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from ._cpu import cache_dir, cpu_flags, cpu_model, pinned_threads, torch_threads
from ._memory import keep_freed_memory
from ._values import check_choice, parse_positive_or_auto

__all__ = ["Precision", "Threads", "bf16_speed_ratio", "cached_measure", "capped_threads",
           "choose_precision", "choose_threads", "cpu_flags", "held_threads", "machine",
           "parse_threads", "pinned_threads", "substituted_cpu_bf16"]

NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
BF16_SUBSTITUTE = "ATTNKIT_CPU_BF16"  # "native" | "none": the CPU's bf16 answer, substituted


def machine() -> dict:
    """CPU model, ISA level, native bf16, cores, threads and load: what a figure depends on."""
    flags = cpu_flags()
    native = [f for f in NATIVE_BF16_FLAGS if f in flags]
    return {"cpu": cpu_model(), "isa": torch.backends.cpu.get_cpu_capability(),
            "bf16_native": ",".join(native) or "no", "cores": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "load_avg_1min": round(os.getloadavg()[0], 2), "torch": torch.__version__}


# ----------------------------------------------------------------- precision
def bf16_speed_ratio(*, size: int = 384, seconds: float = 0.15) -> float:
    """Throughput of a ``size``-square bf16 matmul over fp32's on this CPU (> 1: bf16 faster).

    Alternating timed rounds, medians; about ``4 · seconds`` in all.
    """
    a, b = torch.randn(size, size), torch.randn(size, size)
    pairs = {torch.float32: (a, b), torch.bfloat16: (a.bfloat16(), b.bfloat16())}
    times: dict = {dt: [] for dt in pairs}
    for _ in range(2):
        for dt, (x, y) in pairs.items():
            x @ y  # warm-up
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds / 2:
                x @ y
                n += 1
            times[dt].append((time.perf_counter() - t0) / n)
    return statistics.median(times[torch.float32]) / statistics.median(times[torch.bfloat16])


def cached_bf16_speed_ratio(measure: Callable[[], float] = bf16_speed_ratio) -> float:
    """:func:`bf16_speed_ratio`, measured once per CPU model, torch version and thread count."""
    return cached_measure("bf16-speed.json", "", measure)


def cached_measure(file: str, what: str, measure: Callable[[], float]) -> float:
    """``measure()``, once per CPU model, torch version, thread count and ``what``, kept in
    ``file`` of the cache folder (a JSON object; a file that cannot be read or written is
    measured again)."""
    key = f"{cpu_model()}|{torch.__version__}|{torch.get_num_threads()}" + (
        f"|{what}" if what else "")
    path = cache_dir() / file
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if not isinstance(cache, dict) or not isinstance(cache.get(key), (int, float)):
        cache = cache if isinstance(cache, dict) else {}
        cache[key] = measure()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(cache))
        except OSError:
            pass  # a read-only home: measure again next time
    return float(cache[key])


@dataclass(frozen=True)
class Precision:
    """The choice of bf16 autocast, and why; ``warning`` when a forced choice is slow."""

    bf16: bool
    reason: str
    speed_ratio: float | None = None  # bf16 matmul throughput / fp32's, where measured
    warning: str | None = None

    def to_dict(self) -> dict:
        return {"bf16": self.bf16, "reason": self.reason, "bf16_speed_ratio": self.speed_ratio}


def _cpu_bf16(flags: set[str], ratio: Callable[[], float]) -> tuple[bool, str, float | None]:
    """bf16 or not on this CPU, why, and the measured bf16/fp32 matmul ratio. The ratio
    decides even where the CPU has a native bf16 instruction: a CPU with AVX-512-BF16 but
    no AMX (an Intel Xeon here) runs torch's bf16 matmul at 0.55x fp32, and its training
    steps at 0.7x, so the flag alone would make ``auto`` pick the slower precision."""
    native = [f for f in NATIVE_BF16_FLAGS if f in flags]
    r = ratio()
    if native and r > 1.0:
        return True, (f"the CPU runs bf16 natively ({', '.join(native)}; a bf16 matmul "
                      f"measured {r:.2f}x the speed of fp32)"), r
    if native:
        return False, (f"the CPU has {', '.join(native)}, but a bf16 matmul measured {r:.2f}x "
                       "the speed of fp32 here"), r
    if r > 1.0:
        return True, f"a bf16 matmul measured {r:.2f}x the speed of fp32 on this CPU", r
    return False, (f"the CPU has no native bf16 ({torch.backends.cpu.get_cpu_capability()}); a "
                   f"bf16 matmul measured {r:.2f}x the speed of fp32"), r


def substituted_cpu_bf16() -> tuple[bool, str] | None:
    """The CPU's bf16 answer as ``ATTNKIT_CPU_BF16`` substitutes it, or None when unset.

    ``native``: as if the CPU ran bf16 natively; ``none``: as if it had no fast
    bf16. Anything else is refused, naming the variable.
    """
    value = os.environ.get(BF16_SUBSTITUTE, "").strip().lower()
    if not value:
        return None
    check_choice(BF16_SUBSTITUTE, value, ("native", "none"), alternative="unset")
    fast = value == "native"
    return fast, (f"{BF16_SUBSTITUTE}={value}: as if the CPU "
                  + ("ran bf16 natively" if fast else "had no fast bf16"))


def choose_precision(setting: bool | str, device: torch.device, *,
                     flags: Callable[[], set[str]] | None = None,
                     ratio: Callable[[], float] | None = None) -> Precision:
    """bf16 autocast or not, for ``setting`` ``"auto" | True | False`` on ``device``.

    ``flags`` and ``ratio`` (the CPU's features and its bf16/fp32 matmul speed)
    can be substituted, e.g. in tests; without them ``ATTNKIT_CPU_BF16`` (see
    :func:`substituted_cpu_bf16`) may stand in for the CPU, else the CPU is read.
    """
    if setting is False:
        return Precision(False, "bf16 = false")
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        if setting is True or ok:
            why = "the GPU supports bf16" if ok else "bf16 = true (the GPU lacks native bf16)"
            return Precision(True, why if setting == "auto" else f"bf16 = true; {why}")
        return Precision(False, "the GPU does not support bf16")
    substituted = substituted_cpu_bf16() if flags is None and ratio is None else None
    if substituted is not None:
        (fast, why), r = substituted, None
    else:
        fast, why, r = _cpu_bf16((flags or cpu_flags)(), ratio or cached_bf16_speed_ratio)
    if setting == "auto":
        return Precision(fast, why, r)
    warning = None if fast else f"bf16 = true although {why}: expect slower training"
    return Precision(True, f"bf16 = true; {why}", r, warning)


# ------------------------------------------------------------------- threads
def busy_elsewhere(samples: int = 5, interval: float = 0.02) -> int:
    """Processes running on the CPUs besides this one (median of ``/proc/loadavg`` samples)."""
    counts = []
    for _ in range(samples):
        try:
            running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return 0
        counts.append(max(0, running - 1))
        time.sleep(interval)
    return int(statistics.median(counts))


@dataclass(frozen=True)
class Threads:
    count: int
    reason: str


def parse_threads(value: int | str, *, name: str = "threads") -> int | str:
    """A threads setting: ``"auto"`` or a positive int (given as an int or its text);
    ``ValueError`` naming ``name`` otherwise (:func:`attnkit._values.parse_positive_or_auto`,
    the one parser, which the command lines and config files use too)."""
    return parse_positive_or_auto(name, value)


#: the threads per core a setting may ask for: more only wait for each other, and torch
#: crashes on a count far beyond the cores (100000); a few per core stay allowed, to
#: measure what oversubscription costs
MAX_THREADS_PER_CORE = 4


def capped_threads(count: int, *, cores: int | None = None, name: str = "threads",
                   per_core: int = MAX_THREADS_PER_CORE) -> Threads:
    """``count`` threads, or ``per_core`` times the machine's cores when it asks for more
    (the command-line flags allow one per core). The reason says when it was capped."""
    cores = cores or os.cpu_count() or 1
    if count <= cores * per_core:
        return Threads(count, f"{name} = {count}")
    cap = cores * per_core
    where = (f"the {cores} cores of this machine" if per_core == 1 else
             f"{cap}, {per_core} per core of the {cores} of this machine")
    return Threads(cap, f"{name} = {count} capped at {where}")


def choose_threads(setting: int | str, *, cores: int | None = None,
                   busy: Callable[[], int] = busy_elsewhere) -> Threads:
    """OpenMP threads for ``setting`` ``"auto"`` or a positive int (see the module doc;
    a count above the cores is capped, :func:`capped_threads`)."""
    cores = cores or os.cpu_count() or 1
    setting = parse_threads(setting)
    if setting != "auto":
        return capped_threads(setting, cores=cores)
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]):
        omp = capped_threads(int(os.environ["OMP_NUM_THREADS"]), cores=cores)
        return Threads(omp.count, "OMP_NUM_THREADS is set" if omp.count == int(
            os.environ["OMP_NUM_THREADS"]) else f"OMP_NUM_THREADS: {omp.reason}")
    others = busy()
    per_process = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    n = max(1, min(cores, cores - others) // per_process)
    return Threads(n, f"{cores} cores, {others} busy with other processes"
                   + (f", {per_process} training processes" if per_process > 1 else ""))


@contextlib.contextmanager
def held_threads(setting: int | str | Threads | None, **kwargs) -> Iterator[Threads]:
    """Torch's thread count as :func:`choose_threads` picks it for ``setting`` (or a
    :class:`Threads` chosen already), held for the block and restored after it, with the
    backends' thread pinning allowed in it (:func:`pinned_threads`: the count goes to
    their worker threads). ``None``: leave torch's setting as it is, and unpinned.

    The one way attnkit code changes the thread count (benchmarks, the commands, the
    trainer from its start to :meth:`attnkit.train.trainer.Trainer.close`): torch's
    setting is process-wide, so whoever changes it gives it back.

    A job that holds threads here also has the C library's ``malloc`` keep freed memory
    for reuse (:func:`attnkit._memory.keep_freed_memory`: once per process, not undone;
    ``ATTNKIT_MALLOC=system`` declines it), so its steps do not fault in fresh pages for
    every large tensor.
    """
    if setting is None:
        yield Threads(torch.get_num_threads(), "torch's setting")
        return
    keep_freed_memory()
    t = setting if isinstance(setting, Threads) else choose_threads(setting, **kwargs)
    with torch_threads(t.count), pinned_threads():
        yield t
