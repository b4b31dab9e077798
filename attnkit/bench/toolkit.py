"""What every benchmark suite shares: timing, the machine line, length draws, the baseline.

Suites import these from here and nothing from each other:

* :func:`time_alternating` — medians of functions timed in alternation after warm-up;
* :func:`matmul_peak` — what a square matmul reaches on this machine, the limit that
  model-FLOP utilization is measured against;
* :func:`machine_info` — the facts a figure depends on, as strings;
* :func:`uniform_lengths`, :func:`lognormal_lengths`, :func:`padded_batch` — synthetic
  lengths and a padded :class:`attnkit.data.batching.Batch` of random ids;
* :class:`TorchSeq2Seq` and :func:`baseline_step` — the plain-PyTorch model that
  attnkit's Transformer is measured against, and its training step;
* :func:`competing_process` — one CPU-bound process for "under load" rows;
* :func:`default_data_root` — where Multi30k is (:func:`attnkit._data_root.data_root`).

The step attnkit's model takes is :func:`attnkit.train.step.training_step`, the one
its trainer takes.
"""

from __future__ import annotations

import math
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from .._data_root import data_root
from ..data.batching import Batch
from ..nn.positional import PositionalEncoding
from ..runtime import machine
from ..train.loss import smoothed_loss

__all__ = ["TorchSeq2Seq", "baseline_step", "competing_process", "default_data_root",
           "lognormal_lengths", "machine_info", "matmul_peak", "padded_batch",
           "time_alternating", "uniform_lengths"]


def default_data_root() -> Path:
    """Multi30k among the shared corpora (:func:`attnkit._data_root.data_root`)."""
    return data_root() / "multi30k"


def machine_info() -> dict[str, str]:
    """:func:`attnkit.runtime.machine` as strings, plus the Python version."""
    return {**{k: str(v) for k, v in machine().items()}, "python": platform.python_version()}


def time_alternating(fns: dict[str, Callable[[], object]], repeats: int,
                     warmup: int = 1) -> dict[str, float]:
    """Median seconds of each function; one call of each per round, the order of the
    calls reversed every other round (so drifting load falls on all alike)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(repeats):
        for name in (list(fns) if r % 2 == 0 else list(reversed(fns))):
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def matmul_peak(dtype: torch.dtype, n: int, repeats: int) -> float:
    """GFLOP/s of an ``n × n`` matmul in ``dtype`` (median of ``repeats``)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    sec = time_alternating({"mm": lambda: a @ b}, repeats, warmup=2)["mm"]
    return 2 * n**3 / sec / 1e9


def uniform_lengths(B: int, N: int, gen: torch.Generator) -> torch.Tensor:
    """``(B,)`` lengths uniform in ``[N/4, N]``."""
    return torch.randint(N // 4, N + 1, (B,), generator=gen)


def lognormal_lengths(B: int, shortest: int, longest: int, gen: torch.Generator) -> torch.Tensor:
    """``(B,)`` lengths log-normal around ``longest / 2`` (σ = 0.5), clamped to
    ``[shortest, longest]``: a few long sentences among many of middle length."""
    raw = torch.exp(torch.randn(B, generator=gen) * 0.5 + math.log(longest / 2))
    return raw.round().clamp(shortest, longest).long()


def padded_batch(batch_size: int, shortest: int, longest: int, vocab: int,
                 seed: int = 0) -> Batch:
    """A :class:`~attnkit.data.batching.Batch` of random ids ``>= 4`` with
    :func:`lognormal_lengths` for sources and targets (pad id 0)."""
    g = torch.Generator().manual_seed(seed)
    src_lens = lognormal_lengths(batch_size, shortest, longest, g)
    tgt_lens = lognormal_lengths(batch_size, shortest, longest, g)
    S, T = int(src_lens.max()), int(tgt_lens.max())
    src = torch.randint(4, vocab, (batch_size, S), generator=g)  # (B, S)
    tgt = torch.randint(4, vocab, (batch_size, T + 1), generator=g)  # (B, T + 1)
    src = src.masked_fill(torch.arange(S) >= src_lens[:, None], 0)
    tgt = tgt.masked_fill(torch.arange(T + 1) >= tgt_lens[:, None] + 1, 0)
    n = int(tgt_lens.sum())
    return Batch(src, src_lens, tgt[:, :-1], tgt[:, 1:], tgt_lens, n, n,
                 tuple(range(batch_size)))


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


def baseline_step(model: TorchSeq2Seq, optimizer: torch.optim.Optimizer, batch: Batch, *,
                  epsilon: float = 0.1) -> int:
    """The baseline's training step: ``(B, T, V)`` logits at every position, the same
    label-smoothed loss as attnkit's step (padding ignored), backward, one step."""
    model.train()
    logits = model(batch.src, batch.tgt_in, batch.src_valid_lens, batch.tgt_valid_lens)
    loss, _, n = smoothed_loss(logits, batch.tgt_out, epsilon=epsilon)
    (loss / max(1, n)).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return n


@contextmanager
def competing_process() -> Iterator[None]:
    """One CPU-bound process (a Python busy loop) for the duration of the block."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)  # let it take its core and show in /proc/loadavg
        yield
    finally:
        proc.kill()
        proc.wait()
