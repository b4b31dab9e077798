"""How :mod:`attnkit.bench.attention_step` measures: the passes and their median;
:func:`run` returns an :class:`AttentionStepResult`.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass
from typing import ClassVar

import torch

from ...nn import MultiHeadAttention
from ...runtime import held_threads
from ..report import section_markers

__all__ = ["END", "START", "AttentionStepResult", "run"]

START, END = section_markers("attention_step")


@dataclass
class AttentionStepResult:
    label: str
    median_ms: float
    steps: int
    date: str
    markers: ClassVar[tuple[str, str]] = (START, END)

    def summary(self) -> list[str]:
        return [f"{self.label}: {self.median_ms:.2f} ms"]

    def markdown(self, command: str) -> str:
        return ("## One multi-head self-attention training pass\n\n"
                f"Command: `{command}` ({self.date}; B = 64, up to 24 tokens, d = 256, 8 heads, "
                f"`auto` backend, one thread; median of {self.steps} passes)\n\n"
                f"| checkout | forward + backward ms |\n|---|---:|\n"
                f"| {self.label} | {self.median_ms:.2f} |\n")


def run(*, label: str = "attnkit", steps: int = 30, warmup: int = 5) -> AttentionStepResult:
    """Time ``warmup + steps`` passes on one thread; the median of the last ``steps``."""
    if steps < 1:
        raise ValueError(f"--steps: expected at least 1, got {steps}")
    if warmup < 0:
        raise ValueError(f"--warmup: expected at least 0, got {warmup}")
    with held_threads(1):
        torch.manual_seed(0)
        mha = MultiHeadAttention(256, 8, dropout=0.0)
        x = torch.randn(64, 24, 256, requires_grad=True)
        lens = torch.randint(5, 25, (64,))
        times = []
        for i in range(warmup + steps):
            start = time.perf_counter()
            mha(x, x, x, lens).sum().backward()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    times.sort()
    return AttentionStepResult(label, times[len(times) // 2] * 1e3, steps,
                               _dt.date.today().isoformat())
