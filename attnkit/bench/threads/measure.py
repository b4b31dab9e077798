"""How :mod:`attnkit.bench.threads` measures: the training steps per thread setting, idle
and loaded, and the table; :func:`run` returns a :class:`ThreadsResult`.
"""

from __future__ import annotations

import datetime as _dt
import statistics
import time
from dataclasses import dataclass
from typing import ClassVar

import torch

from ...data.batching import BatchingConfig, BucketBatcher
from ...data.generated import generate_pairs
from ...data.tokenizer import CharTokenizer
from ...models.build import build_model
from ...models.config import transformer_small
from ...runtime import held_threads
from ...train.step import training_step
from ..report import section_markers
from ..toolkit import competing_process

__all__ = ["END", "START", "ThreadsResult", "run"]

START, END = section_markers("threads")
TARGET = 0.4  # loaded / idle throughput of threads = auto


def _setup(max_tokens: int, num_batches: int):
    pairs = generate_pairs(6000, seed=0)
    tok = CharTokenizer.train([s for p in pairs for s in p])
    examples = [(tok.encode(s), tok.encode(t)) for s, t in pairs]
    batches = list(BucketBatcher(examples, BatchingConfig(
        max_tokens=max_tokens, max_sentence_tokens=60, seed=0)).batches_for_epoch(0))[:num_batches]
    model = build_model(transformer_small(tok.vocab_size, num_heads=8, ffn_num_hiddens=512,
                                          dropout=0.1))
    return model, torch.optim.Adam(model.parameters(), lr=1e-4), batches


def _tokens_per_s(model, opt, batches) -> float:
    tokens, t0 = 0, time.perf_counter()
    for b in batches:
        tokens += training_step(model, opt, b, epsilon=0.1)
    return tokens / (time.perf_counter() - t0)


@dataclass
class ThreadsResult:
    rows: list[dict]  # setting, threads idle/loaded, tokens/s idle/loaded, ratio
    rounds: int
    date: str
    markers: ClassVar[tuple[str, str]] = (START, END)

    def auto_ratio(self) -> float:
        return next(r["ratio"] for r in self.rows if r["setting"] == "auto")

    def summary(self) -> list[str]:
        lines = [f"threads={r['setting']:>4}: idle {r['idle']:8.0f} tok/s "
                 f"({r['threads_idle']} threads), loaded {r['loaded']:8.0f} tok/s "
                 f"({r['threads_loaded']} threads): {r['ratio']:.2f}x" for r in self.rows]
        met = "met" if self.auto_ratio() >= TARGET else "NOT met"
        return lines + [f"auto keeps {self.auto_ratio():.2f}x of idle (target >= {TARGET}): "
                        f"{met}"]

    def markdown(self, command: str) -> str:
        head = ("## Threads on a shared machine\n\n"
                f"Command: `{command}` ({self.date}; median of {self.rounds} rounds per cell; "
                "training steps of the Multi30k config's model sizes on date-task batches; "
                "loaded = one other CPU-bound process running)\n\n"
                "| threads setting | threads idle / loaded | tokens/s idle | tokens/s loaded "
                "| loaded / idle |\n|---|---|---|---|---|\n")
        body = "".join(f"| {r['setting']} | {r['threads_idle']} / {r['threads_loaded']} | "
                       f"{r['idle']:,.0f} | {r['loaded']:,.0f} | {r['ratio']:.2f}× |\n"
                       for r in self.rows)
        return head + body + (f"\nTarget: `auto` keeps ≥ {TARGET}× of its idle throughput "
                              f"under load: {self.auto_ratio():.2f}×.\n")


def _measure(setting, model, opt, batches, rounds: int) -> tuple[int, float]:
    with held_threads(setting) as t:
        _tokens_per_s(model, opt, batches[:2])  # warm-up at this thread count
        return t.count, statistics.median(_tokens_per_s(model, opt, batches)
                                          for _ in range(rounds))


def run(*, rounds: int = 3, max_tokens: int = 1500, num_batches: int = 6) -> ThreadsResult:
    """Time the settings idle, then under one competing process (torch's thread
    setting is the same after as before)."""
    model, opt, batches = _setup(max_tokens, num_batches)
    n = torch.get_num_threads()
    settings = [1, n if n > 1 else 2, "auto"]
    idle = {str(s): _measure(s, model, opt, batches, rounds) for s in settings}
    with competing_process():
        loaded = {str(s): _measure(s, model, opt, batches, rounds) for s in settings}
    rows = [{"setting": s, "threads_idle": idle[s][0], "threads_loaded": loaded[s][0],
             "idle": idle[s][1], "loaded": loaded[s][1], "ratio": loaded[s][1] / idle[s][1]}
            for s in map(str, settings)]
    return ThreadsResult(rows, rounds, _dt.date.today().isoformat())
