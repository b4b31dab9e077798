"""How :mod:`attnkit.bench.transformer` measures: the batch, the two models' steps and the
table; :func:`run` returns a :class:`TransformerBenchResult`.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from ...models import build_model, count_parameters, transformer_small
from ...runtime import cpu_model, held_threads
from ...train.step import training_step
from ..report import section_markers
from ..toolkit import TorchSeq2Seq, baseline_step, padded_batch, time_alternating

__all__ = ["END", "START", "StepTiming", "TransformerBenchResult", "measure_step", "run"]

START, END = section_markers("transformer-step")


@dataclass
class StepTiming:
    """One thread count: medians in seconds per training step, the ratio attnkit / torch."""

    attnkit_s: float
    torch_s: float
    ratio: float
    batch_size: int
    src_len: int
    tgt_len: int
    real_fraction: float
    real_tokens: int
    attnkit_params: int
    torch_params: int
    reps: int
    threads: int
    dtype: str
    device: str

    @property
    def speedup(self) -> float:
        return self.torch_s / self.attnkit_s


def _models(config, device: str, dtype: torch.dtype) -> dict[str, tuple]:
    """``{name: (model, optimizer, step)}`` for attnkit's Transformer and the baseline."""
    ours = build_model(config).to(device, dtype).train()
    base = TorchSeq2Seq(config.src_vocab_size, config.tgt_vocab_size, config.num_hiddens,
                        config.num_heads, config.ffn_num_hiddens, config.num_encoder_layers,
                        config.dropout, config.max_len).to(device, dtype).train()
    # foreach: one multi-tensor update instead of a loop over parameters, for both
    return {"attnkit": (ours, torch.optim.Adam(ours.parameters(), lr=1e-4, foreach=True),
                        training_step),
            "torch": (base, torch.optim.Adam(base.parameters(), lr=1e-4, foreach=True),
                      baseline_step)}


def measure_step(*, batch_size: int = 32, shortest: int = 6, longest: int = 64,
                 vocab: int = 8000, reps: int = 10, warmup: int = 2, seed: int = 0,
                 threads: int | None = None, device: str = "cpu",
                 dtype: torch.dtype = torch.float32) -> StepTiming:
    """Time training steps of both models on one padded batch, alternating; return medians.
    ``threads`` holds torch's thread count for the measurement only (``None``: as it is)."""
    with held_threads(threads) as t:
        torch.manual_seed(seed)
        config = transformer_small(vocab, max_len=max(1024, longest + 1))
        models = _models(config, device, dtype)
        batch = padded_batch(batch_size, shortest, longest, vocab, seed).to(device)
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

        def timed(name: str):
            model, opt, step = models[name]
            return lambda: (step(model, opt, batch, epsilon=0.1), sync())

        sync()
        med = time_alternating({n: timed(n) for n in models}, reps, warmup=warmup)
    real = int(batch.src_valid_lens.sum() + batch.tgt_valid_lens.sum())
    return StepTiming(
        attnkit_s=med["attnkit"], torch_s=med["torch"], ratio=med["attnkit"] / med["torch"],
        batch_size=batch_size, src_len=batch.src.shape[1], tgt_len=batch.tgt_in.shape[1],
        real_fraction=real / (batch.src.numel() + batch.tgt_in.numel()), real_tokens=real,
        attnkit_params=count_parameters(models["attnkit"][0]),
        torch_params=count_parameters(models["torch"][0]), reps=reps, threads=t.count,
        dtype=str(dtype).replace("torch.", ""), device=device)


@dataclass
class TransformerBenchResult:
    """One :class:`StepTiming` per thread count (see :class:`attnkit.bench.report.SuiteResult`)."""

    steps: list[StepTiming]

    markers: ClassVar[tuple[str, str]] = (START, END)

    def summary(self) -> list[str]:
        """One line per thread count: both step times and the ratio."""
        return [f"{x.threads} threads: attnkit {x.attnkit_s * 1e3:.0f} ms, torch "
                f"{x.torch_s * 1e3:.0f} ms per step; ratio attnkit / torch {x.ratio:.2f} "
                f"({x.speedup:.2f}× speed-up)" for x in self.steps]

    def markdown(self, command: str) -> str:
        """The Markdown written between the markers: one row per thread count."""
        return _format_section(self.steps, command)


def run(*, threads: Sequence[int | None] = (None,), batch_size: int = 32, shortest: int = 6,
        longest: int = 64, vocab: int = 8000, reps: int = 10, warmup: int = 2, seed: int = 0,
        device: str = "cpu", dtype: torch.dtype = torch.float32) -> TransformerBenchResult:
    """:func:`measure_step` at each thread count in ``threads`` (``None``: torch's default)."""
    return TransformerBenchResult([
        measure_step(batch_size=batch_size, shortest=shortest, longest=longest, vocab=vocab,
                     reps=reps, warmup=warmup, seed=seed, threads=t, device=device,
                     dtype=dtype) for t in threads])


def _format_section(results: list[StepTiming], command: str) -> str:
    r = results[0]
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    gpu = (f", GPU {torch.cuda.get_device_name()}" if r.device.startswith("cuda") else "")
    busy = hasattr(os, "getloadavg") and os.getloadavg()[0] > (os.cpu_count() or 1)
    load = ", load average (1/5/15 min) {:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg()) \
        if hasattr(os, "getloadavg") else ""
    note = (" The load average exceeded the number of cores (other processes were"
            " running), which slows multi-threaded steps most; the 1-thread row is the"
            " least disturbed." if busy else "")
    rows = [f"| {x.threads} | {x.attnkit_s * 1e3:.0f} | {x.torch_s * 1e3:.0f} | {x.ratio:.2f} |"
            f" {x.speedup:.2f}× | {x.real_tokens / x.attnkit_s:,.0f} |"
            f" {x.real_tokens / x.torch_s:,.0f} |" for x in results]
    return "\n".join([
        "## Transformer training step: attnkit vs torch.nn.Transformer",
        "",
        f"`transformer_small` (d=256, 4 heads, FFN 1024, 3+3 layers, dropout 0.1), one step ="
        f" forward + label-smoothed cross-entropy (ε = 0.1) + backward + Adam, each model's"
        f" step as its training runs it (attnkit: `attnkit.train.step.training_step`, logits"
        f" at the target positions only), {r.dtype}, batch {r.batch_size},"
        f" padded to S={r.src_len}, T={r.tgt_len}; {r.real_fraction:.0%} of the positions are"
        f" real tokens ({r.real_tokens}). Parameters: attnkit {r.attnkit_params:,},"
        f" torch {r.torch_params:,} (its two final LayerNorms). Median of {r.reps} alternating"
        " steps after warm-up, same batch, same process. Ratio = attnkit / torch (lower is"
        " better for attnkit). attnkit skips the padding: its attention backend leaves out"
        " padded keys and queries, and the projections, FFN sublayers and output layer run"
        " on the real tokens only; the baseline computes every padded position.",
        "",
        "| torch threads | attnkit step (ms) | torch step (ms) | ratio | speed-up |"
        " attnkit real tokens/s | torch real tokens/s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores{gpu}{load};"
        f" torch {torch.__version__}; {platform.python_implementation()}"
        f" {platform.python_version()}. Date: {date}.{note}",
        f"Command: `{command}`",
    ])
