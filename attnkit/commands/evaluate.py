"""``attnkit evaluate``: BLEU (sacrebleu, with signature), chrF and the lowercased
tokenized BLEU that published Multi30k figures use, on a test set."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint directory or run folder")
    p.add_argument("--src", help="source file, one sentence per line")
    p.add_argument("--ref", help="reference file, line-aligned with --src")
    p.add_argument("--multi30k-split", help="instead of --src/--ref: a Multi30k split of the "
                                            "checkpoint's data (e.g. test_2016_flickr)")
    p.add_argument("--beam-size", type=int, default=4, help="beam width (1 = greedy)")
    p.add_argument("--length-penalty", type=float, default=0.6, help="GNMT alpha")
    p.add_argument("--average", type=int, default=0,
                   help="average the weights of the last N checkpoints first")
    p.add_argument("--limit", type=int, default=None, help="only the first N sentences")
    p.add_argument("--hyp-out", help="write the translations to this file")
    p.add_argument("--json", action="store_true", help="print the scores as JSON")


def _translator(args: argparse.Namespace):
    """The run's translator, with the last ``--average`` checkpoints averaged."""
    from .._values import check_nonnegative_int
    from ..decode.translator import load_translator
    from ..runs.checkpoint import average_checkpoints, list_checkpoints, resolve_checkpoint

    weights = None
    if check_nonnegative_int("--average", args.average):
        ckpt = resolve_checkpoint(args.checkpoint)
        paths = list_checkpoints(ckpt.parent)[-args.average:]
        weights = average_checkpoints(paths)
        print(f"averaged {len(paths)} checkpoints: {[p.name for p in paths]}", file=sys.stderr)
    return load_translator(args.checkpoint, weights=weights)


def _test_pairs(args: argparse.Namespace, run) -> list[tuple[str, str]]:
    """The test pairs: ``--src``/``--ref`` files, or a Multi30k split of the run's data."""
    from ..data.corpus import load_multi30k, read_aligned_files

    if args.multi30k_split:
        data = (run.train or {}).get("data", {})
        if data.get("kind") != "multi30k" or not data.get("multi30k_root"):
            raise ValueError("--multi30k-split needs a checkpoint trained on [data] kind = "
                             "'multi30k'")
        corpus = load_multi30k(data["multi30k_root"], args.multi30k_split, data["src_lang"],
                               data["tgt_lang"], tokenized=data["tokenized"])
    elif args.src and args.ref:
        corpus = read_aligned_files(args.src, args.ref)
    else:
        raise ValueError("give --src and --ref, or --multi30k-split")
    return corpus.pairs[: args.limit] if args.limit else corpus.pairs


def run_cli(args: argparse.Namespace) -> int:
    from ..eval.bleu import corpus_bleu, corpus_chrf, tokenized_lowercase_bleu

    tr = _translator(args)
    pairs = _test_pairs(args, tr.run)
    srcs, refs = [s for s, _ in pairs], [t for _, t in pairs]
    hyps = tr.translate(srcs, beam_size=args.beam_size, alpha=args.length_penalty)
    if args.hyp_out:
        Path(args.hyp_out).write_text("\n".join(hyps) + "\n", encoding="utf-8")
    bleu, chrf, lc = corpus_bleu(hyps, refs), corpus_chrf(hyps, refs), \
        tokenized_lowercase_bleu(hyps, refs)
    result = {"sentences": len(hyps), "bleu": bleu.score, "bleu_signature": bleu.signature,
              "chrf": chrf.score, "chrf_signature": chrf.signature,
              "bleu_lc_tok": lc.score, "bleu_lc_tok_signature": lc.signature,
              "beam_size": args.beam_size}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"sentences: {len(hyps)}  (beam {args.beam_size})")
        print(f"BLEU  {bleu.score:6.2f}   {bleu.signature}")
        print(f"chrF  {chrf.score:6.2f}   {chrf.signature}")
        print(f"BLEU (lowercased, tokenized; the published Multi30k figures) "
              f"{lc.score:6.2f}   {lc.signature}")
    return 0
