"""Training-step benchmark: attnkit's Transformer vs ``torch.nn.Transformer`` on padded batches.

One training step = forward, cross-entropy over the real target tokens,
backward, and an Adam step (``foreach=True`` for both models). Both models
have the ``transformer_small`` sizes
(d=256, 4 heads, FFN 1024, 3+3 layers, dropout 0.1, post-LN, ReLU), the same
embeddings ×√d, sinusoidal encodings and output projection; the baseline uses
``torch.nn.Transformer`` with key-padding masks and a causal target mask (its
only extra parameters are the two final LayerNorms ``nn.Transformer`` always
has). Same batch, same process, alternating steps after warm-up; the
medians and the ratio attnkit / torch are reported.

The batch has a realistic length spread: lengths drawn log-normally (median
about half the maximum) and clipped to ``[shortest, longest]``, padded to the
longest. attnkit skips the padding (the attention backends skip padded keys
and queries, and the position-wise layers run on real tokens only); the
baseline computes on every padded position as ``torch.nn.Transformer``
does in training.

Run ``attnkit bench transformer`` (``--help`` for options; ``--record`` writes
its table to ``BENCHMARKS.md`` between the markers
``<!-- bench:transformer-step:start -->`` and ``<!-- bench:transformer-step:end -->``);
in Python, :func:`run` returns a :class:`TransformerBenchResult`.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..models import build_model, count_parameters, transformer_small
from ..nn.positional import PositionalEncoding
from ..runtime import cpu_model

__all__ = ["END", "START", "StepTiming", "TorchSeq2Seq", "TransformerBenchResult",
           "measure_step", "run"]

START = "<!-- bench:transformer-step:start -->"
END = "<!-- bench:transformer-step:end -->"


class TorchSeq2Seq(nn.Module):
    """The baseline: ``torch.nn.Transformer`` with the same embeddings and output layer."""

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, d: int, heads: int, ffn: int,
                 layers: int, dropout: float, max_len: int):
        super().__init__()
        self.src_embedding = nn.Embedding(src_vocab_size, d)
        self.tgt_embedding = nn.Embedding(tgt_vocab_size, d)
        self.pos_encoding = PositionalEncoding(d, dropout, max_len)
        self.transformer = nn.Transformer(d, heads, layers, layers, ffn, dropout,
                                          batch_first=True)
        self.output = nn.Linear(d, tgt_vocab_size)
        self.scale = math.sqrt(d)

    def forward(self, src, tgt_in, src_valid_lens, tgt_valid_lens):
        S, T = src.shape[1], tgt_in.shape[1]
        src_pad = torch.arange(S, device=src.device) >= src_valid_lens[:, None]  # True = pad
        tgt_pad = torch.arange(T, device=src.device) >= tgt_valid_lens[:, None]
        causal = torch.ones(T, T, dtype=torch.bool, device=src.device).triu(1)  # True = masked
        x = self.pos_encoding(self.src_embedding(src) * self.scale)  # (B, S, d)
        y = self.pos_encoding(self.tgt_embedding(tgt_in) * self.scale)  # (B, T, d)
        h = self.transformer(x, y, tgt_mask=causal, src_key_padding_mask=src_pad,
                             tgt_key_padding_mask=tgt_pad, memory_key_padding_mask=src_pad,
                             tgt_is_causal=True)  # (B, T, d)
        return self.output(h)  # (B, T, V)


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


def _lengths(batch_size: int, shortest: int, longest: int, g: torch.Generator) -> torch.Tensor:
    median = longest / 2
    raw = torch.exp(torch.randn(batch_size, generator=g) * 0.5 + math.log(median))
    return raw.round().clamp(shortest, longest).long()  # (B,)


def make_batch(batch_size: int, shortest: int, longest: int, vocab: int, seed: int = 0):
    """Padded ``(src, tgt_in, tgt_out, src_valid_lens, tgt_valid_lens)`` (pad id 0)."""
    g = torch.Generator().manual_seed(seed)
    src_lens = _lengths(batch_size, shortest, longest, g)
    tgt_lens = _lengths(batch_size, shortest, longest, g)
    S, T = int(src_lens.max()), int(tgt_lens.max())
    src = torch.randint(4, vocab, (batch_size, S), generator=g)
    tgt = torch.randint(4, vocab, (batch_size, T + 1), generator=g)
    src = src.masked_fill(torch.arange(S) >= src_lens[:, None], 0)
    tgt = tgt.masked_fill(torch.arange(T + 1) >= tgt_lens[:, None] + 1, 0)
    return src, tgt[:, :-1], tgt[:, 1:], src_lens, tgt_lens


def _step(model, opt, batch) -> None:
    src, tgt_in, tgt_out, src_lens, tgt_lens = batch
    logits = model(src, tgt_in, src_lens, tgt_lens)  # (B, T, V)
    loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=0)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def measure_step(*, batch_size: int = 32, shortest: int = 6, longest: int = 64,
                 vocab: int = 8000, reps: int = 10, warmup: int = 2, seed: int = 0,
                 threads: int | None = None, device: str = "cpu",
                 dtype: torch.dtype = torch.float32) -> StepTiming:
    """Time training steps of both models on one padded batch, alternating; return medians."""
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    config = transformer_small(vocab, max_len=max(1024, longest + 1))
    ours = build_model(config).to(device, dtype).train()
    base = TorchSeq2Seq(vocab, vocab, config.num_hiddens, config.num_heads,
                        config.ffn_num_hiddens, config.num_encoder_layers, config.dropout,
                        config.max_len).to(device, dtype).train()
    batch = tuple(t.to(device) for t in make_batch(batch_size, shortest, longest, vocab, seed))
    # foreach: one multi-tensor update instead of a loop over parameters, for both
    opts = {"attnkit": torch.optim.Adam(ours.parameters(), lr=1e-4, foreach=True),
            "torch": torch.optim.Adam(base.parameters(), lr=1e-4, foreach=True)}
    models = {"attnkit": ours, "torch": base}
    times: dict[str, list[float]] = {"attnkit": [], "torch": []}
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for i in range(warmup + reps):
        order = ("attnkit", "torch") if i % 2 == 0 else ("torch", "attnkit")
        for name in order:
            sync()
            t0 = time.perf_counter()
            _step(models[name], opts[name], batch)
            sync()
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    a, b = statistics.median(times["attnkit"]), statistics.median(times["torch"])
    src, tgt_in, _, src_lens, tgt_lens = batch
    real = int(src_lens.sum() + tgt_lens.sum())
    return StepTiming(
        attnkit_s=a, torch_s=b, ratio=a / b, batch_size=batch_size, src_len=src.shape[1],
        tgt_len=tgt_in.shape[1], real_fraction=real / (src.numel() + tgt_in.numel()),
        real_tokens=real, attnkit_params=count_parameters(ours),
        torch_params=count_parameters(base), reps=reps, threads=torch.get_num_threads(),
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
        f" forward + cross-entropy + backward + Adam, {r.dtype}, batch {r.batch_size},"
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
