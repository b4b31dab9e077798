"""Training throughput on real bucketed batches: attnkit's Transformer vs ``torch.nn.Transformer``.

Both models have the same sizes, embeddings (×√d), sinusoidal encodings and
output layer (the baseline is :class:`attnkit.bench.transformer.TorchSeq2Seq`);
both see the same length-bucketed batches from :class:`attnkit.data.batching.BucketBatcher`
(Multi30k when ``../shared/data`` is present, else the built-in date task),
one training step each (forward, label-smoothed loss, backward, Adam), in
alternation after warm-up. Reported: target tokens per second of each, and
the ratio attnkit / torch (higher is better for attnkit).

``attnkit bench throughput --record`` writes its table to BENCHMARKS.md between
its markers; in Python, :func:`run` returns a :class:`ThroughputResult`.
"""

from __future__ import annotations

import datetime as _dt
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from ..data.batching import BatchingConfig, BucketBatcher
from ..data.tokenizer import SentencePieceTokenizer
from ..train.loss import smoothed_loss
from ..train.trainer import valid_targets
from .attention import machine_info
from .transformer import TorchSeq2Seq

__all__ = ["DEFAULT_DATA", "END", "START", "ThroughputResult", "corpus_batches", "run"]

START = "<!-- bench:train-throughput:start -->"
END = "<!-- bench:train-throughput:end -->"
DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "multi30k"


def corpus_batches(max_tokens: int, num_batches: int, data_root: Path, seed: int = 0):
    """Bucketed batches of real pairs, and a description of where they came from."""
    if (data_root / "raw" / "train.de").exists():
        from ..data.corpus import load_multi30k

        pairs = load_multi30k(data_root, "train", "de", "en").pairs[:8000]
        tok = SentencePieceTokenizer.train([s for p in pairs for s in p], vocab_size=6000)
        source = "Multi30k de→en (first 8,000 pairs, shared 6k SentencePiece)"
    else:
        from ..data.generated import generate_pairs
        from ..data.tokenizer import CharTokenizer

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

    markers: ClassVar[tuple[str, str]] = (START, END)

    def summary(self) -> list[str]:
        """Tokens per second of each model, and the ratio."""
        return [*(f"{k:22s} {v:10,.0f} target tokens/s" for k, v in self.tokens_per_s.items()),
                f"ratio attnkit / torch: {self.ratio:.2f}"]

    def markdown(self, command: str) -> str:
        """The Markdown written between the markers."""
        info, z = self.machine, self.sizes
        return "\n".join([
            "## Training throughput on bucketed batches: attnkit vs torch.nn.Transformer",
            "",
            f"Date {self.date}; {info['cpu']}, {info['cores']} cores, "
            f"{info['threads']} torch threads; torch {info['torch']}.",
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
            "(`attnkit.train.loss`, ε = 0.1), forward, backward and Adam.",
            "",
            "| model | target tokens/s |",
            "|---|---:|",
            *[f"| {k} | {v:,.0f} |" for k, v in self.tokens_per_s.items()],
            "",
            f"**Ratio attnkit / torch: {self.ratio:.2f}×** (target ≥ 1.0×: "
            f"{'met' if self.ratio >= 1.0 else 'not met'}).",
        ])


def run(*, max_tokens: int = 4096, num_batches: int = 6, rounds: int = 3,
        data_root: Path = DEFAULT_DATA, d: int = 256, heads: int = 4, ffn: int = 1024,
        layers: int = 3) -> ThroughputResult:
    """Time training steps of both models on the same bucketed batches, alternating."""
    torch.manual_seed(0)
    batches, vocab, source, pad_frac = corpus_batches(max_tokens, num_batches, data_root)
    steps = _training_steps(vocab, d, heads, ffn, layers)
    for step in steps.values():  # warm-up
        step(batches[0])
    tokens = sum(b.num_tokens for b in batches)
    tps = _median_tokens_per_s(steps, batches, rounds)
    return ThroughputResult(
        tokens_per_s=tps, ratio=tps["attnkit"] / tps["torch.nn.Transformer"], source=source,
        padding=pad_frac, batches=len(batches), tokens=tokens, max_tokens=max_tokens,
        rounds=rounds, sizes={"d": d, "heads": heads, "ffn": ffn, "layers": layers},
        machine=machine_info(), date=_dt.date.today().isoformat())


def _training_steps(vocab: int, d: int, heads: int, ffn: int,
                    layers: int) -> dict[str, Callable[[object], None]]:
    """``{model name: step(batch)}``: each model's training step as its trainer runs it."""
    from ..models import Transformer

    ours = Transformer(vocab, vocab, num_hiddens=d, num_heads=heads, ffn_num_hiddens=ffn,
                       num_encoder_layers=layers, num_decoder_layers=layers, dropout=0.1)
    theirs = TorchSeq2Seq(vocab, vocab, d, heads, ffn, layers, 0.1, 1024)

    def make_step(m: torch.nn.Module) -> Callable[[object], None]:
        opt = torch.optim.Adam(m.parameters(), lr=1e-4)

        def step(b) -> None:
            m.train()
            if m is ours:  # logits of the valid positions only, as attnkit's Trainer asks
                logits = m(b.src, b.tgt_in, b.src_valid_lens, b.tgt_valid_lens, only_valid=True)
                loss, _, n = smoothed_loss(logits, valid_targets(b), epsilon=0.1)
            else:
                logits = m(b.src, b.tgt_in, b.src_valid_lens, b.tgt_valid_lens)
                loss, _, n = smoothed_loss(logits, b.tgt_out, epsilon=0.1)
            (loss / n).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    return {"attnkit": make_step(ours), "torch.nn.Transformer": make_step(theirs)}


def _median_tokens_per_s(steps: dict[str, Callable[[object], None]], batches: list,
                         rounds: int) -> dict[str, float]:
    """Median over rounds (one step on every batch, models in alternating order) of
    target tokens per second."""
    tokens = sum(b.num_tokens for b in batches)
    per_round: dict[str, list[float]] = {k: [] for k in steps}
    for r in range(rounds):
        for name in (list(steps) if r % 2 == 0 else list(reversed(steps))):
            t0 = time.perf_counter()
            for b in batches:
                steps[name](b)
            per_round[name].append(tokens / (time.perf_counter() - t0))
    return {k: statistics.median(v) for k, v in per_round.items()}
