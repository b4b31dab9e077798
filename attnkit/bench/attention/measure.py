"""How :mod:`attnkit.bench.attention` measures: the workloads, the contenders, the peak
matmul and the table; :func:`run` returns a :class:`BenchResult`.
"""

from __future__ import annotations

import datetime as _dt
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F

import attnkit
from attnkit.scores import Additive, Bilinear, Distance, ScaledDot

from ..._profiling import peak_memory_bytes as _peak_memory_bytes
from ...runtime import held_threads
from ..report import section_markers
from ..toolkit import machine_info, matmul_peak, time_alternating, uniform_lengths

__all__ = ["END", "START", "BenchResult", "Row", "run"]

START, END = section_markers("cpu-attention")


@dataclass
class Row:
    """One contender on one workload and pass."""

    workload: str
    mode: str  # "fwd" | "fwd+bwd"
    impl: str
    ms: float | None  # median; None when it did not run
    gflops: float | None = None
    peak_frac: float | None = None
    mem_mib: float | None = None
    speedup: float | None = None  # this median / attnkit's median
    note: str = ""


@dataclass
class BenchResult:
    """The suite's rows and targets (see :class:`attnkit.bench.report.SuiteResult`)."""

    rows: list[Row]
    targets: list[tuple[str, str, float | None, bool | None]]  # (name, rule, value, met)
    peaks: dict[str, float]  # dtype name -> measured matmul GFLOP/s
    machine: dict[str, str]
    date: str
    notes: list[str] = field(default_factory=list)

    markers: ClassVar[tuple[str, str]] = (START, END)

    def summary(self) -> list[str]:
        """One line per target: rule, measured value, met or not."""
        lines = []
        for name, rule, value, met in self.targets:
            status = "—" if met is None else "met" if met else "NOT met"
            shown = "—" if value is None else f"{value:.2f}"
            lines.append(f"{name:55s} {rule:>7s} {shown:>8s}  {status}")
        return lines

    def markdown(self, command: str) -> str:
        """The Markdown written between the markers (without the markers)."""
        return _format_section(self, command)

    def row(self, workload: str, mode: str, impl_prefix: str) -> Row | None:
        for r in self.rows:
            if r.workload == workload and r.mode == mode and r.impl.startswith(impl_prefix):
                return r
        return None


# ------------------------------------------------------------------ measuring


def peak_memory_bytes(fn: Callable[[], object]) -> int:
    """Peak of the running sum of allocations during ``fn()`` (profiler memory events),
    on one torch thread: the profiler sees the allocations of this thread only, and with
    more threads ``chunked`` computes its blocks in worker threads (with one, here)."""
    with held_threads(1):
        return _peak_memory_bytes(fn, no_grad=False)


# ------------------------------------------------------------------ workloads


@dataclass
class Workload:
    name: str
    dtype: torch.dtype
    make: Callable[[], tuple]  # -> (q, k, v, score, kwargs, mask for SDPA or None)
    flops_fwd: float  # needed FLOPs of the forward
    modes: tuple[str, ...] = ("fwd", "fwd+bwd")
    baselines: tuple[str, ...] = ("reference", "sdpa+mask", "flex")
    flex_lens: bool = False  # the mask is key padding by lengths (for flex)
    backend: str = "auto"  # attnkit's contender ("chunked" for additive: what is measured)


def _dot_workload(name, score_factory, B, H, N, d, dtype, seed, *, self_attention=False,
                  baselines=("reference", "sdpa+mask", "flex"), modes=("fwd", "fwd+bwd"),
                  extra_flops_per_seq=0.0) -> Workload:
    gen = torch.Generator().manual_seed(seed)
    lens = uniform_lengths(B, N, gen)
    rows = lens if self_attention else torch.full((B,), N)
    flops = 2.0 * H * d * 2 * float((rows * lens).sum()) + extra_flops_per_seq * B

    def make():
        g = torch.Generator().manual_seed(seed + 1)
        q, k, v = (torch.randn(B, H, N, d, generator=g).to(dtype) for _ in range(3))
        kw = {"valid_lens": lens}
        mask = torch.arange(N) < lens[:, None, None, None]  # (B, 1, 1, N) keys
        if self_attention:
            kw["query_valid_lens"] = lens
            mask = mask & (torch.arange(N)[:, None] < lens[:, None, None, None])  # (B,1,N,N)
        return q, k, v, score_factory(d), kw, mask

    return Workload(name, dtype, make, flops, modes, baselines, flex_lens=True)


def _additive_workload(name, B, N, d, h, seed, modes=("fwd", "fwd+bwd"),
                       baselines=("reference",)) -> Workload:
    # projections 2·N·d·h each for q and k; per pair: add + tanh + multiply-add (h each
    # counted 1, 1, 2) and 2·Dv for the weighted sum of values
    flops = B * (2 * 2 * N * d * h + N * N * (4 * h + 2 * d))

    def make():
        g = torch.Generator().manual_seed(seed + 1)
        torch.manual_seed(seed)
        q, k, v = (torch.randn(B, N, d, generator=g) for _ in range(3))
        return q, k, v, Additive(h, d, d), {}, None

    # chunked, named: on the quick shapes auto would pick the reference (a small call)
    return Workload(name, torch.float32, make, flops, modes, baselines, backend="chunked")


def workloads(quick: bool) -> tuple[list[Workload], dict]:
    """The issue's target shapes (or tiny ones with ``quick``)."""
    if quick:
        B, H, N, d, aB, aN, ah, bigN = 2, 2, 64, 16, 2, 32, 8, 96
    else:
        B, H, N, d, aB, aN, ah, bigN = 8, 8, 1024, 64, 4, 512, 64, 4096
    f32, bf16 = torch.float32, torch.bfloat16
    scaled = lambda d: ScaledDot()  # noqa: E731
    dot_sizes = (B, H, N, d)
    wl = [
        _dot_workload("scaled_dot valid_lens fp32", scaled, *dot_sizes, f32, seed=0),
        _dot_workload("scaled_dot valid_lens + query padding fp32", scaled, *dot_sizes, f32,
                      seed=0, self_attention=True),
        _dot_workload("scaled_dot valid_lens bf16", scaled, *dot_sizes, bf16, seed=0,
                      modes=("fwd",), baselines=("sdpa+mask",)),
        _dot_workload("distance valid_lens fp32", lambda d: Distance(math.sqrt(d)), *dot_sizes,
                      f32, seed=0, baselines=("sdpa+mask",)),
        _dot_workload("bilinear valid_lens fp32", lambda d: Bilinear(d, d, scaled=True),
                      *dot_sizes, f32, seed=0, baselines=("sdpa+mask",),
                      extra_flops_per_seq=2.0 * H * N * d * d),
        _additive_workload(f"additive B={aB} N={aN} h={ah}", aB, aN, d, ah, seed=0),
    ]
    big = _additive_workload(f"additive B={aB} N={bigN} h={ah}", aB, bigN, d, ah, seed=0,
                             modes=("fwd+bwd",), baselines=())
    return wl, {"big": big, "sizes": {"B": B, "H": H, "N": N, "d": d, "aB": aB, "aN": aN,
                                      "ah": ah, "bigN": bigN}}


# ---------------------------------------------------------------- contenders


def _contenders(w: Workload, flex_cache: dict) -> tuple[dict, dict, str, list]:
    """Callables ``{impl: fn}``, notes ``{impl: why not run}``, attnkit's label, inputs."""
    q, k, v, score, kw, mask = w.make()
    choice = attnkit.explain_backend(q, k, v, score=score, backend=w.backend, **kw).name
    label = f"attnkit:{choice}"
    fns: dict[str, Callable] = {label: lambda: attnkit.attention(q, k, v, score=score,
                                                                  backend=w.backend, **kw)}
    notes: dict[str, str] = {}
    if "reference" in w.baselines:
        fns["reference"] = lambda: attnkit.attention(q, k, v, score=score, backend="reference",
                                                     **kw)
    if "sdpa+mask" in w.baselines:
        def sdpa_masked():
            f = score.as_dot(q, k)  # bilinear folds M in; distance adds its key bias
            m = mask if f.key_bias is None else \
                f.key_bias[:, :, None, :].to(q.dtype).masked_fill(~mask, float("-inf"))
            return F.scaled_dot_product_attention(f.queries, f.keys, v, attn_mask=m,
                                                  scale=f.scale)

        fns["sdpa+mask"] = sdpa_masked
    if "flex" in w.baselines:
        flex, why = _flex(q, kw, flex_cache)
        if flex is None:
            notes["flex (compiled)"] = why
        else:
            fns["flex (compiled)"] = lambda: flex(q, k, v)
    inputs = [q, k, v, *[p for p in score.parameters()]]
    return fns, notes, label, inputs


def _flex(q, kw, cache):
    """A compiled FlexAttention with the padding block mask, or ``(None, reason)``."""
    if "error" in cache:
        return None, cache["error"]
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        B, N = q.shape[0], q.shape[2]
        lens = kw["valid_lens"]
        qlens = kw.get("query_valid_lens")
        if qlens is None:
            def mask_mod(b, h, qi, ki):
                return ki < lens[b]
        else:
            def mask_mod(b, h, qi, ki):
                return (ki < lens[b]) & (qi < qlens[b])
        block_mask = create_block_mask(mask_mod, B, None, N, N, device=q.device.type)
        if "fn" not in cache:
            cache["fn"] = torch.compile(flex_attention, dynamic=False)
        fn = cache["fn"]

        def run(q_, k_, v_):
            return fn(q_, k_, v_, block_mask=block_mask)

        return run, ""
    except Exception as e:  # report, never hide: the reason goes in the table
        cache["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
        return None, cache["error"]


def _with_grad(fn: Callable, inputs: list[torch.Tensor], grad_out: torch.Tensor) -> Callable:
    def step():
        out = fn()
        return torch.autograd.grad(out, [t for t in inputs if t.requires_grad], grad_out)

    return step


def _bench_workload(w: Workload, repeats: int, flex_cache: dict, peaks: dict,
                    rows: list[Row], medians: dict, log: Callable[[str], None]) -> None:
    fns, notes, label, inputs = _contenders(w, flex_cache)
    peak = peaks["bfloat16" if w.dtype == torch.bfloat16 else "float32"]
    for mode in w.modes:
        grad = mode == "fwd+bwd"
        for t in inputs[:3]:
            t.requires_grad_(grad)
        if grad:
            out = fns[label]()
            grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
            grad_out = grad_out.to(out.dtype)
            calls = {n: _with_grad(f, inputs, grad_out) for n, f in fns.items()}
        else:
            calls = {n: (lambda f=f: _no_grad(f)) for n, f in fns.items()}
        good, failed = {}, {}
        for n, c in calls.items():  # a contender that fails is reported, not hidden
            try:
                c()
                good[n] = c
            except Exception as e:
                failed[n] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
        med = time_alternating(good, repeats)
        flops = w.flops_fwd * (3.5 if grad else 1.0)
        for n in list(fns) + list(notes):
            if n in med:
                mem = peak_memory_bytes(good[n]) / 2**20
                ms = med[n] * 1e3
                gf = flops / med[n] / 1e9
                rows.append(Row(w.name, mode, n, ms, gf, gf / peak, mem,
                                med[n] / med[label] if label in med else None))
                medians[(w.name, mode, n.split(":")[0])] = (med[n], mem)
            else:
                rows.append(Row(w.name, mode, n, None, note=failed.get(n, notes.get(n, ""))))
        log(f"{w.name} [{mode}]: " + ", ".join(f"{n} {t * 1e3:.1f} ms" for n, t in med.items()))


def _no_grad(fn):
    with torch.no_grad():
        return fn()


# -------------------------------------------------------------------- driver


def run(*, quick: bool = False, repeats: int | None = None, flex: bool | None = None,
        big: bool | None = None, verbose: bool = False) -> BenchResult:
    """Run the suite; return its rows and targets (nothing is written).

    Args:
        quick: tiny shapes and few repeats (a smoke test of the machinery).
        repeats: timed rounds per workload (default 3 quick, 7 full).
        flex: include compiled FlexAttention (default: not in quick mode).
        big: run the large additive workload (default True).
        verbose: print each workload's medians to stderr as it finishes.
    """
    def log(msg: str) -> None:
        if verbose:
            print(msg, file=sys.stderr, flush=True)

    repeats = repeats or (3 if quick else 7)
    flex = (not quick) if flex is None else flex
    big = True if big is None else big
    torch.manual_seed(0)
    n = 256 if quick else 2048
    peaks = {"float32": matmul_peak(torch.float32, n, repeats),
             "bfloat16": matmul_peak(torch.bfloat16, n, repeats)}
    wl, extra = workloads(quick)
    if not flex:
        for w in wl:
            w.baselines = tuple(b for b in w.baselines if b != "flex")
    rows: list[Row] = []
    medians: dict = {}
    flex_cache: dict = {} if flex else {"error": "not run (flex disabled)"}
    for w in wl:
        _bench_workload(w, repeats, flex_cache, peaks, rows, medians, log)
    notes = [_additive_how(wl)]
    log(notes[0])
    if big:
        notes.append(_big_additive(extra["big"], rows, medians, peaks))
        log(notes[-1])
    return BenchResult(rows, _targets(medians, extra["sizes"]), peaks, machine_info(),
                       _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                       notes)


def _additive_how(wl: list[Workload]) -> str:
    """How ``chunked`` evaluated the additive blocks (compiled kernel or torch ops, and why)."""
    w = next(w for w in wl if w.name.startswith("additive"))
    q, k, v, score, _, _ = w.make()
    how = attnkit.explain_backend(q, k, v, score=score, backend=w.backend).how
    return f"How chunked ran: {how}."


def _big_additive(w: Workload, rows, medians, peaks) -> str:
    """One fwd+bwd of the large additive case (the reference is not run, only modeled)."""
    q, k, v, score, kw, _ = w.make()
    for t in (q, k, v):
        t.requires_grad_()
    B, N, h = q.shape[0], q.shape[1], score.num_hiddens
    inputs = [q, k, v, *score.parameters()]
    grad_out = torch.randn(B, N, v.shape[-1])

    def step():
        out = attnkit.attention(q, k, v, score=score, backend=w.backend)
        return torch.autograd.grad(out, inputs, grad_out)

    t0 = time.perf_counter()
    step()
    sec = time.perf_counter() - t0
    mem = peak_memory_bytes(step) / 2**20  # a second run, on one thread
    choice = attnkit.explain_backend(q, k, v, score=score, backend=w.backend).name
    gf = w.flops_fwd * 3.5 / sec / 1e9
    rows.append(Row(w.name, "fwd+bwd", f"attnkit:{choice}", sec * 1e3, gf,
                    gf / peaks["float32"], mem, None, "one run"))
    feat = B * N * N * h * 4  # one (B, N, N, h) float32 tensor
    need = 2 * feat  # the reference keeps W_q q + W_k k and its tanh for backward
    rows.append(Row(w.name, "fwd+bwd", "reference", None,
                    note=f"not run: needs ≥ {need / 2**30:.0f} GiB (2 × (B, N, N, h) float32)"))
    medians[("big", "fwd+bwd", "attnkit")] = (sec, mem)
    medians[("big", "modeled", "reference")] = (None, need / 2**20)
    return (f"Additive N={N}: the reference would hold at least two (B, N, N, h) float32 "
            f"tensors = {need / 2**30:.0f} GiB; attnkit ran fwd+bwd in {sec:.1f} s with a "
            f"peak of {mem:.0f} MiB.")


def _targets(m: dict, s: dict) -> list[tuple[str, str, float | None, bool | None]]:
    def ratio(wl, mode, base, ours="attnkit"):
        a, b = m.get((wl, mode, ours)), m.get((wl, mode, base))
        return None if a is None or b is None else b[0] / a[0]

    def mem_ratio(wl, mode):
        a, b = m.get((wl, mode, "attnkit")), m.get((wl, mode, "reference"))
        return None if a is None or b is None or a[1] == 0 else b[1] / a[1]

    out = []

    def add(name, rule, value, threshold):
        out.append((name, rule, value, None if value is None else value >= threshold))

    sd, sq = "scaled_dot valid_lens fp32", "scaled_dot valid_lens + query padding fp32"
    add("scaled dot fwd vs SDPA+mask", "≥ 1.5×", ratio(sd, "fwd", "sdpa+mask"), 1.5)
    add("scaled dot fwd vs reference", "≥ 5×", ratio(sd, "fwd", "reference"), 5)
    add("scaled dot fwd+bwd vs SDPA+mask", "≥ 1.3×", ratio(sd, "fwd+bwd", "sdpa+mask"), 1.3)
    add("(query padding too) fwd vs SDPA+mask", "≥ 1.5×", ratio(sq, "fwd", "sdpa+mask"), 1.5)
    add("(query padding too) fwd+bwd vs SDPA+mask", "≥ 1.3×",
        ratio(sq, "fwd+bwd", "sdpa+mask"), 1.3)
    ad = f"additive B={s['aB']} N={s['aN']} h={s['ah']}"
    add("additive fwd+bwd vs reference", "≥ 3×", ratio(ad, "fwd+bwd", "reference"), 3)
    add("additive fwd+bwd peak memory, reference / attnkit", "≥ 8×",
        mem_ratio(ad, "fwd+bwd"), 8)
    big = m.get(("big", "fwd+bwd", "attnkit"))
    need = m.get(("big", "modeled", "reference"))
    if need is not None:
        out.append((f"additive N={s['bigN']} runs (reference needs > 16 GiB)",
                    "runs", need[1] / 1024, big is not None and need[1] > 16 * 1024))
    for name in ("distance", "bilinear"):
        for mode in ("fwd", "fwd+bwd"):
            a = m.get((f"{name} valid_lens fp32", mode, "attnkit"))
            b = m.get((sd, mode, "attnkit"))
            value = None if a is None or b is None else b[0] / a[0]
            add(f"{name} {mode}: speed relative to scaled dot", "≥ 0.8×", value, 0.8)
    a = m.get(("scaled_dot valid_lens bf16", "fwd", "attnkit"))
    b = m.get((sd, "fwd", "attnkit"))
    add("bf16 vs fp32 scaled dot fwd", "≥ 1.5×", None if a is None or b is None else
        b[0] / a[0], 1.5)
    return out


# ------------------------------------------------------------------- output


def _fmt(x, spec):
    return "—" if x is None else format(x, spec)


def _format_section(r: BenchResult, command: str) -> str:
    mi = r.machine
    lines = [
        "## Attention on the CPU: attnkit backends vs reference, SDPA with a mask, FlexAttention",
        "",
        f"- Machine: {mi['cpu']}, {mi['cores']} cores ({mi['threads']} torch threads); "
        f"torch {mi['torch']}, Python {mi['python']}",
        f"- Command: `{command}`",
        f"- Date: {r.date}",
        f"- Measured matmul peak: fp32 {r.peaks['float32']:.0f} GFLOP/s, "
        f"bf16 {r.peaks['bfloat16']:.0f} GFLOP/s",
        "- Median of alternating rounds after warm-up; `speedup` = contender's median / "
        "attnkit's median (> 1: attnkit faster). GFLOP/s count only needed FLOPs (valid "
        "keys of real queries; backward = 2.5× forward). Peak memory = profiler memory "
        "events, max running sum during one call (beyond the inputs), measured on one "
        "thread (`chunked` adds its block buffers once per worker thread).",
        "- Lengths uniform in [N/4, N]; `query padding` also passes "
        "`query_valid_lens` (padded self-attention: padded query rows are zero).",
        "",
        "| workload | pass | implementation | median ms | GFLOP/s | % of matmul peak "
        "| peak MiB | speedup of attnkit |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in r.rows:
        ms = _fmt(row.ms, ".1f") if row.ms is not None else f"— ({row.note})"
        sp = "" if row.impl.startswith("attnkit") else _fmt(row.speedup, ".2f")
        if row.impl.startswith("attnkit") and row.note:
            ms = f"{ms} ({row.note})"
        lines.append(
            f"| {row.workload} | {row.mode} | {row.impl} | {ms} | {_fmt(row.gflops, '.1f')} "
            f"| {_fmt(None if row.peak_frac is None else 100 * row.peak_frac, '.0f')} "
            f"| {_fmt(row.mem_mib, '.1f')} | {sp} |")
    lines += ["", "### Targets", "", "| target | rule | measured | met |", "|---|---|---:|---|"]
    for name, rule, value, met in r.targets:
        unit = " GiB" if rule == "runs" else "×"
        val = _fmt(value, ".2f") + ("" if value is None else unit)
        lines.append(f"| {name} | {rule} | {val} | "
                     f"{'—' if met is None else 'yes' if met else 'no'} |")
    if r.notes:
        lines += [""] + [f"- {n}" for n in r.notes]
    return "\n".join(lines) + "\n"
