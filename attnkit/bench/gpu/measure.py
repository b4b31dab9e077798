"""How :mod:`attnkit.bench.gpu` measures: the shapes, the contenders' CUDA-event timings and
the table; :func:`run` returns a :class:`GpuBenchResult`.
"""

from __future__ import annotations

import datetime as _dt
import math
import statistics
import subprocess
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..report import section_markers

__all__ = ["END", "START", "GpuBenchResult", "needed_flops", "run"]

START, END = section_markers("gpu")


def _time_cuda(fns: dict, repeats: int) -> dict:
    for fn in fns.values():
        fn()
    torch.cuda.synchronize()
    times: dict = {k: [] for k in fns}
    for r in range(repeats):
        for name in (list(fns) if r % 2 == 0 else list(reversed(fns))):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fns[name]()
            e.record()
            torch.cuda.synchronize()
            times[name].append(s.elapsed_time(e) / 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def needed_flops(lens, n: int, d: int, heads: int, causal: bool) -> float:
    """Forward FLOPs of ``QKᵀ`` and ``PV`` over the keys each query may see."""
    total = 0
    for L in lens.tolist():
        keys = L * (L + 1) // 2 + (n - L) * L if causal else n * L
        total += 4 * d * heads * keys
    return float(total)


@dataclass
class GpuBenchResult:
    """One row per (shape, implementation) (see :class:`attnkit.bench.report.SuiteResult`)."""

    rows: list[dict]  # d, N, causal, valid_lens, impl, ms, tflops[, peak_mib]
    gpu: str
    driver: str
    torch_version: str
    triton_version: str
    date: str

    markers: ClassVar[tuple[str, str]] = (START, END)

    def summary(self) -> list[str]:
        """One line per row."""
        return [f"d={r['d']:<4d} N={r['N']:<6d} causal={r['causal']!s:<5} "
                f"valid_lens={r['valid_lens']!s:<5} {r['impl']:<22s} {r['ms']:9.3f} ms"
                + ("" if math.isnan(r["tflops"]) else f" {r['tflops']:7.1f} TFLOP/s")
                + (f" peak {r['peak_mib']:.0f} MiB" if "peak_mib" in r else "")
                for r in self.rows]

    def markdown(self, command: str) -> str:
        """The Markdown written between the markers."""
        lines = ["## GPU: Triton kernels vs SDPA backends", "",
                 f"Date {self.date}; {self.gpu}, driver {self.driver}; torch "
                 f"{self.torch_version}, Triton {self.triton_version}. Command: `{command}`.",
                 "", "| d | N | causal | valid_lens | implementation | ms | TFLOP/s (needed) "
                 "| peak MiB |", "|---:|---:|:---:|:---:|---|---:|---:|---:|"]
        for r in self.rows:
            peak = f"{r['peak_mib']:.0f}" if "peak_mib" in r else ""
            lines.append(f"| {r['d']} | {r['N']} | {r['causal']} | {r['valid_lens']} | "
                         f"{r['impl']} | {r['ms']:.3f} | {r['tflops']:.1f} | {peak} |")
        return "\n".join(lines)


def run(*, quick: bool = False, repeats: int = 10) -> GpuBenchResult:
    """Run the suite on the first CUDA device.

    Raises:
        OSError: no CUDA device is available (an environment error).
    """
    if not torch.cuda.is_available():
        raise OSError("the GPU benchmark needs a CUDA device; none is available here")
    dev = torch.device("cuda")
    rows = []
    ns = [1024, 4096] if quick else [1024, 2048, 4096, 8192, 16384]
    for d in (64, 128):
        for n in ns:
            for causal in (False, True):
                for with_lens in (False, True):
                    rows += _dot_case(dev, d, n, causal, with_lens, repeats)
    rows += _additive_rows(dev, [1024, 2048] if quick else [1024, 4096, 8192], repeats)
    return _result(rows)


def _dot_case(dev, d, n, causal, with_lens, repeats):
    """One shape: attnkit triton vs each SDPA backend that accepts the call."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from ...functional import attention

    B, H = max(1, 16384 // n), 16 if d == 64 else 8
    g = torch.Generator(device=dev).manual_seed(0)
    q, k, v = (torch.randn(B, H, n, d, device=dev, dtype=torch.bfloat16, generator=g)
               for _ in range(3))
    lens = (torch.randint(n // 4, n + 1, (B,), device=dev, generator=g) if with_lens
            else torch.full((B,), n, device=dev))
    mask = (torch.arange(n, device=dev) < lens[:, None])[:, None, None, :] if with_lens else None
    if mask is not None and causal:
        mask = mask & torch.ones(n, n, dtype=torch.bool, device=dev).tril()
    fns = {"attnkit triton": lambda: attention(q, k, v, valid_lens=lens if with_lens else None,
                                               causal=causal, backend="triton")}
    for name, be in (("SDPA flash", SDPBackend.FLASH_ATTENTION),
                     ("SDPA efficient", SDPBackend.EFFICIENT_ATTENTION),
                     ("SDPA cuDNN", SDPBackend.CUDNN_ATTENTION)):
        def call(be=be):
            with sdpa_kernel(be):
                return torch.nn.functional.scaled_dot_product_attention(
                    q, k, v, attn_mask=mask, is_causal=causal and mask is None)
        try:
            call()
            fns[name] = call
        except RuntimeError:  # this SDPA backend refuses the call (e.g. flash + mask)
            pass
    flops = needed_flops(lens, n, d, H, causal)
    return [{"d": d, "N": n, "causal": causal, "valid_lens": with_lens, "impl": name,
             "ms": t * 1e3, "tflops": flops / t / 1e12}
            for name, t in _time_cuda(fns, repeats).items()]


def _additive_case(dev, score, n, repeats):
    from ...functional import attention

    q, k, v = (torch.randn(4, n, 64, device=dev, dtype=torch.bfloat16) for _ in range(3))
    lens = torch.randint(n // 4, n + 1, (4,), device=dev)
    fns = {}
    for backend in ("triton", "chunked", "reference"):
        need = 4 * n * n * 64 * 2 * 2  # the naive path's two (B, N, N, h) bf16 buffers
        if backend == "reference" and need > 0.6 * torch.cuda.mem_get_info()[0]:
            continue
        fns[backend] = (lambda b=backend: attention(q, k, v, score=score, valid_lens=lens,
                                                    backend=b))
    med = _time_cuda(fns, repeats)
    rows = []
    for name, fn in fns.items():
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        rows.append({"d": 64, "N": n, "causal": False, "valid_lens": True,
                     "impl": f"additive {name}", "ms": med[name] * 1e3, "tflops": float("nan"),
                     "peak_mib": (torch.cuda.max_memory_allocated() - base) / 2**20})
    return rows


def _additive_rows(dev, ns, repeats):
    """Fused additive (triton) vs chunked vs naive, bf16, B=4, d=h=64, with peak memory."""
    from ...scores import Additive

    score = Additive(64, 64, 64).to(dev, torch.bfloat16)
    return [row for n in ns for row in _additive_case(dev, score, n, repeats)]


def _result(rows: list[dict]) -> GpuBenchResult:
    """The rows with the device, driver and library versions they were measured with."""
    import triton

    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,"
                                 "noheader"], capture_output=True, text=True).stdout.strip()
    except OSError:
        driver = "unknown"
    return GpuBenchResult(rows, torch.cuda.get_device_properties(0).name, driver,
                          torch.__version__, triton.__version__, _dt.date.today().isoformat())
