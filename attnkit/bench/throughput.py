"""Training throughput on real bucketed batches: attnkit's Transformer vs ``torch.nn.Transformer``.

Both models have the same sizes, embeddings (×√d), sinusoidal encodings and
output layer (the baseline is :class:`attnkit.bench.transformer.TorchSeq2Seq`);
both see the same length-bucketed batches from :class:`attnkit.data.batching.BucketBatcher`
(Multi30k when ``../shared/data`` is present, else the built-in date task),
one training step each (forward, label-smoothed loss, backward, Adam), in
alternation after warm-up. Reported: target tokens per second of each, and
the ratio attnkit / torch (higher is better for attnkit).

``python -m attnkit.bench.throughput`` (or ``attnkit bench throughput``)
writes its table to BENCHMARKS.md between its markers.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import statistics
import time
from pathlib import Path

import torch

from ..data.batching import BatchingConfig, BucketBatcher
from ..data.tokenizer import SentencePieceTokenizer
from ..train.trainer import smoothed_loss, valid_targets
from .attention import machine_info
from .report import write_marked
from .transformer import TorchSeq2Seq

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
    batcher = BucketBatcher(examples, BatchingConfig(max_tokens=max_tokens, max_len=100,
                                                     seed=seed))
    batches = list(batcher.batches_for_epoch(0))[:num_batches]
    return batches, tok.vocab_size, source, batcher.padding_fraction(0)


def run_throughput_bench(*, max_tokens: int = 4096, num_batches: int = 6, rounds: int = 3,
                         data_root: Path = DEFAULT_DATA, output: str | None = "BENCHMARKS.md",
                         command: str = "attnkit bench throughput", d: int = 256, heads: int = 4,
                         ffn: int = 1024, layers: int = 3) -> dict:
    torch.manual_seed(0)
    batches, vocab, source, pad_frac = corpus_batches(max_tokens, num_batches, data_root)
    from ..models import Transformer

    ours = Transformer(vocab, vocab, num_hiddens=d, num_heads=heads, ffn_num_hiddens=ffn,
                       num_encoder_layers=layers, num_decoder_layers=layers, dropout=0.1)
    theirs = TorchSeq2Seq(vocab, vocab, d, heads, ffn, layers, 0.1, 1024)
    models = {"attnkit": ours, "torch.nn.Transformer": theirs}
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-4) for k, m in models.items()}

    def step(name, b):  # each model as its trainer would run it
        m, opt = models[name], opts[name]
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

    for name in models:  # warm-up
        step(name, batches[0])
    per_round: dict[str, list[float]] = {k: [] for k in models}
    tokens = sum(b.num_tokens for b in batches)
    for r in range(rounds):
        order = list(models) if r % 2 == 0 else list(reversed(models))
        for name in order:
            t0 = time.perf_counter()
            for b in batches:
                step(name, b)
            per_round[name].append(tokens / (time.perf_counter() - t0))
    tps = {k: statistics.median(v) for k, v in per_round.items()}
    ratio = tps["attnkit"] / tps["torch.nn.Transformer"]
    result = {"tokens_per_s": tps, "ratio": ratio, "source": source, "padding": pad_frac,
              "batches": len(batches), "tokens": tokens}
    if output:
        info = machine_info()
        lines = [
            "## Training throughput on bucketed batches: attnkit vs torch.nn.Transformer",
            "",
            f"Date {_dt.date.today().isoformat()}; {info['cpu']}, {info['cores']} cores, "
            f"{info['threads']} torch threads; torch {info['torch']}.",
            f"Command: `{command}`.",
            "",
            f"Data: {source}; {len(batches)} length-bucketed batches of ≤ {max_tokens} tokens "
            f"({tokens:,} target tokens, padding {pad_frac:.1%} of slots). Model: d={d}, "
            f"{heads} heads, FFN {ffn}, {layers}+{layers} layers, dropout 0.1, fp32. "
            f"Median of {rounds} alternating rounds; a round = one training step on every batch.",
            "Each model runs the step its own training would: attnkit as its Trainer does "
            "(logits only at target positions, `only_valid=True`), the baseline on its "
            "`(B, T, V)` logits; both use the same fused label-smoothed loss "
            "(`attnkit.train.loss`, ε = 0.1), forward, backward and Adam.",
            "",
            "| model | target tokens/s |",
            "|---|---:|",
            *[f"| {k} | {v:,.0f} |" for k, v in tps.items()],
            "",
            f"**Ratio attnkit / torch: {ratio:.2f}×** (target ≥ 1.0×: "
            f"{'met' if ratio >= 1.0 else 'not met'}).",
        ]
        write_marked(output, START, END, "\n".join(lines))
    return result


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="attnkit bench throughput", description=__doc__)
    p.add_argument("--max-tokens", type=int, default=4096)
    p.add_argument("--batches", type=int, default=6)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--output", default="BENCHMARKS.md")
    args = p.parse_args(argv)
    cmd = "attnkit bench throughput" + ("" if not argv else " " + " ".join(argv))
    r = run_throughput_bench(max_tokens=args.max_tokens, num_batches=args.batches,
                             rounds=args.rounds, output=args.output, command=cmd)
    for k, v in r["tokens_per_s"].items():
        print(f"{k:22s} {v:10,.0f} target tokens/s")
    print(f"ratio attnkit / torch: {r['ratio']:.2f}")
    return r


if __name__ == "__main__":
    main()
