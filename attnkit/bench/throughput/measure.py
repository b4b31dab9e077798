"""How :mod:`attnkit.bench.throughput` measures: the batches, the two models' steps and the
table; :func:`run` returns a :class:`ThroughputResult`.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch.utils.flop_counter import FlopCounterMode

from ...data.batching import BatchingConfig, BucketBatcher
from ...data.tokenizer import SentencePieceTokenizer
from ...runtime import held_threads
from ...train.setup import fused_where_supported
from ...train.step import training_step
from ..report import section_markers
from ..toolkit import (
    TorchSeq2Seq,
    baseline_step,
    default_data_root,
    machine_info,
    matmul_peak,
    time_alternating,
)

__all__ = ["END", "START", "ThroughputResult", "corpus_batches", "default_data_root", "run"]

START, END = section_markers("train-throughput")


def corpus_batches(max_tokens: int, num_batches: int, data_root: Path, seed: int = 0):
    """Bucketed batches of real pairs, and a description of where they came from."""
    if (data_root / "raw" / "train.de").exists():
        from ...data.corpus import load_multi30k

        pairs = load_multi30k(data_root, "train", "de", "en").pairs[:8000]
        tok = SentencePieceTokenizer.train([s for p in pairs for s in p], vocab_size=6000)
        source = "Multi30k de→en (first 8,000 pairs, shared 6k SentencePiece)"
    else:
        from ...data.generated import generate_pairs
        from ...data.tokenizer import CharTokenizer

        pairs = generate_pairs(8000, seed=seed)
        tok = CharTokenizer.train([s for p in pairs for s in p])
        source = "built-in date task (8,000 pairs, characters)"
    examples = [(tok.encode(s), tok.encode(t)) for s, t in pairs]
    batcher = BucketBatcher(examples, BatchingConfig(max_tokens=max_tokens, max_sentence_tokens=100,
                                                     seed=seed))
    batches = list(batcher.batches_for_epoch(0))[:num_batches]
    return batches, tok.vocab_size, source, batcher.padding_fraction(0)


@dataclass
class ThroughputResult:
    """Target tokens per second of each model (see :class:`attnkit.bench.report.SuiteResult`)."""

    tokens_per_s: dict[str, float]  # model -> median target tokens/s
    ratio: float  # attnkit / torch (higher is better for attnkit)
    source: str  # where the pairs came from
    padding: float  # fraction of padded slots in the batches
    batches: int
    tokens: int  # target tokens per round
    max_tokens: int
    rounds: int
    sizes: dict[str, int]  # d, heads, ffn, layers
    machine: dict[str, str]
    date: str
    flops_per_token: float = 0.0  # model FLOPs of a target token, forward and backward
    peak_gflops: float = 0.0  # an fp32 n × n matmul timed in turns with the steps, GFLOP/s
    peak_size: int = 0  # its n

    @property
    def mfu(self) -> dict[str, float]:
        """Model-FLOP utilization of each model: its tokens/s times the model FLOPs of a
        target token, over the fp32 matmul peak measured in the same run."""
        return {k: v * self.flops_per_token / (self.peak_gflops * 1e9)
                for k, v in self.tokens_per_s.items()}

    markers: ClassVar[tuple[str, str]] = (START, END)

    def summary(self) -> list[str]:
        """Tokens per second of each model, and the ratio."""
        mfu = self.mfu
        return [*(f"{k:22s} {v:10,.0f} target tokens/s   MFU {mfu[k]:.0%}"
                  for k, v in self.tokens_per_s.items()),
                f"ratio attnkit / torch: {self.ratio:.2f}",
                f"model FLOPs per target token {self.flops_per_token / 1e6:.1f} M; fp32 "
                f"matmul peak {self.peak_gflops:.0f} GFLOP/s (n = {self.peak_size})"]

    def markdown(self, command: str) -> str:
        """The Markdown written between the markers."""
        info, z = self.machine, self.sizes
        return "\n".join([
            "## Training throughput on bucketed batches: attnkit vs torch.nn.Transformer",
            "",
            f"Date {self.date}; {info['cpu']}, {info['cores']} cores, "
            f"{info['threads']} torch threads; torch {info['torch']}; ISA "
            f"{info.get('isa', '?')}.",
            f"Command: `{command}`.",
            "",
            f"Data: {self.source}; {self.batches} length-bucketed batches of ≤ "
            f"{self.max_tokens} tokens ({self.tokens:,} target tokens, padding "
            f"{self.padding:.1%} of slots). Model: d={z['d']}, {z['heads']} heads, FFN "
            f"{z['ffn']}, {z['layers']}+{z['layers']} layers, dropout 0.1, fp32. "
            f"Median of {self.rounds} alternating rounds; a round = one training step on "
            "every batch.",
            "Each model runs the step its own training would: attnkit as its Trainer does "
            "(logits only at target positions, `only_valid=True`), the baseline on its "
            "`(B, T, V)` logits; both use the same fused label-smoothed loss "
            "(`attnkit.train.loss`, ε = 0.1), forward, backward and Adam (torch's fused kernel "
            "where it has one, as the trainer builds it).",
            "",
            "Model-FLOP utilization (MFU) = target tokens/s × the model FLOPs of a target "
            f"token ({self.flops_per_token / 1e6:.1f} M: forward and backward of attnkit's "
            "step, counted by `torch.utils.flop_counter.FlopCounterMode`; the same useful "
            "work is credited to both models) ÷ the fp32 matmul peak measured in this run "
            f"({self.peak_gflops:.0f} GFLOP/s, an n × n product timed in turns with the "
            "steps, n the fastest of "
            f"{', '.join(map(str, PEAK_SIZES))}: n = {self.peak_size}).",
            "",
            "| model | target tokens/s | MFU |",
            "|---|---:|---:|",
            *[f"| {k} | {v:,.0f} | {self.mfu[k]:.0%} |" for k, v in self.tokens_per_s.items()],
            "",
            f"**Ratio attnkit / torch: {self.ratio:.2f}×** (target ≥ 1.0×: "
            f"{'met' if self.ratio >= 1.0 else 'not met'}); attnkit's MFU "
            f"{self.mfu['attnkit']:.0%} (target ≥ 80 %: "
            f"{'met' if self.mfu['attnkit'] >= 0.8 else 'not met'}).",
        ])


#: the sizes ``n`` of the ``n × n`` fp32 matmuls whose best is the run's peak
PEAK_SIZES = (512, 1024, 2048)


def run(*, max_tokens: int = 2500, num_batches: int = 6, rounds: int = 3,
        data_root: Path | None = None, d: int = 256, heads: int = 8, ffn: int = 512,
        layers: int = 3, threads: int = 1) -> ThroughputResult:
    """Time training steps of both models on the same bucketed batches, alternating, on
    ``threads`` torch threads; the defaults are the sizes of ``configs/multi30k-de-en.toml``."""
    with held_threads(threads):
        return _run(max_tokens, num_batches, rounds, data_root, d, heads, ffn, layers)


def _run(max_tokens, num_batches, rounds, data_root, d, heads, ffn, layers) -> ThroughputResult:
    torch.manual_seed(0)
    data_root = default_data_root() if data_root is None else Path(data_root)
    batches, vocab, source, pad_frac = corpus_batches(max_tokens, num_batches, data_root)
    steps = _training_steps(vocab, d, heads, ffn, layers)
    flops = model_flops_per_token(steps["attnkit"], batches[0])  # also attnkit's warm-up
    steps["torch.nn.Transformer"](batches[0])  # warm-up
    probe = {n: matmul_peak(torch.float32, n, 3) for n in PEAK_SIZES}
    peak_size = max(probe, key=probe.get)
    tokens = sum(b.num_tokens for b in batches)
    tps, peak = _median_tokens_per_s(steps, batches, rounds, peak_size, probe[peak_size])
    return ThroughputResult(
        tokens_per_s=tps, ratio=tps["attnkit"] / tps["torch.nn.Transformer"], source=source,
        padding=pad_frac, batches=len(batches), tokens=tokens, max_tokens=max_tokens,
        rounds=rounds, sizes={"d": d, "heads": heads, "ffn": ffn, "layers": layers},
        machine=machine_info(), date=_dt.date.today().isoformat(), flops_per_token=flops,
        peak_gflops=peak, peak_size=peak_size)


def model_flops_per_token(step: Callable[[object], int], batch) -> float:
    """The FLOPs of one training ``step`` on ``batch`` (forward, backward; counted by
    ``FlopCounterMode``: matrix products and attention, not elementwise work) per target
    token it returns."""
    with FlopCounterMode(display=False) as counter:
        tokens = step(batch)
    return counter.get_total_flops() / max(1, tokens)


def _training_steps(vocab: int, d: int, heads: int, ffn: int,
                    layers: int) -> dict[str, Callable[[object], int]]:
    """``{model name: step(batch)}``: each model's training step as its trainer runs it
    (attnkit's is :func:`attnkit.train.step.training_step`, logits at the valid target
    positions only; the baseline's :func:`attnkit.bench.toolkit.baseline_step`)."""
    from ...models import Transformer

    ours = Transformer(vocab, vocab, num_hiddens=d, num_heads=heads, ffn_num_hiddens=ffn,
                       num_encoder_layers=layers, num_decoder_layers=layers, dropout=0.1)
    theirs = TorchSeq2Seq(vocab, vocab, d, heads, ffn, layers, 0.1, 1024)
    # the Adam the trainer builds (fused where torch has it), for both
    opt_ours = torch.optim.Adam(ours.parameters(), lr=1e-4, **fused_where_supported(ours))
    opt_theirs = torch.optim.Adam(theirs.parameters(), lr=1e-4,
                                  **fused_where_supported(theirs))
    return {"attnkit": lambda b: training_step(ours, opt_ours, b, epsilon=0.1),
            "torch.nn.Transformer": lambda b: baseline_step(theirs, opt_theirs, b, epsilon=0.1)}


def _median_tokens_per_s(steps: dict[str, Callable[[object], int]], batches: list,
                         rounds: int, n: int, probed: float) -> tuple[dict[str, float], float]:
    """Target tokens per second of each model, and the GFLOP/s of an ``n × n`` fp32
    matmul (``probed`` GFLOP/s before, which sizes it): a round is one step on every
    batch, then about a second of matmuls, all
    timed in alternation (:func:`attnkit.bench.toolkit.time_alternating`), so that the
    peak sees the load the steps saw."""
    tokens = sum(b.num_tokens for b in batches)
    a, b = torch.randn(n, n), torch.randn(n, n)
    repeats = max(1, round(probed * 1e9 / (2 * n**3)))  # about a second

    def epoch(step: Callable[[object], int]) -> Callable[[], None]:
        return lambda: [step(b) for b in batches]

    fns = {k: epoch(f) for k, f in steps.items()}
    seconds = time_alternating({**fns, "matmul": lambda: [a @ b for _ in range(repeats)]},
                               rounds, warmup=0)
    peak = 2 * n**3 * repeats / seconds.pop("matmul") / 1e9
    return {k: tokens / sec for k, sec in seconds.items()}, peak
