"""``attnkit translate``: translate sentences from arguments, a file or stdin."""

from __future__ import annotations

import argparse
import sys


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sentences", nargs="*", help="sentences to translate (default: read "
                                                "--input, or stdin, one per line)")
    p.add_argument("--checkpoint", required=True,
                   help="a checkpoint directory, or a run folder (its latest checkpoint)")
    p.add_argument("--input", help="file with one sentence per line ('-' for stdin)")
    p.add_argument("--beam-size", type=int, default=4, help="beam width; 1 = greedy (default 4)")
    p.add_argument("--length-penalty", type=float, default=0.6,
                   help="GNMT length penalty alpha for beam search (default 0.6)")
    p.add_argument("--max-output-len", type=int, default=None,
                   help="longest output in tokens (default: 2 x source length + 10)")


def read_sentences(args) -> list[str]:
    if args.sentences:
        return list(args.sentences)
    if args.input and args.input != "-":
        from pathlib import Path

        path = Path(args.input)
        if not path.exists():
            raise FileNotFoundError(f"--input file not found: {path}")
        return path.read_text(encoding="utf-8").splitlines()
    return sys.stdin.read().splitlines()


def run_cli(args: argparse.Namespace) -> int:
    from .._values import check_positive_int
    from ..decode.translator import load_translator

    check_positive_int("--beam-size", args.beam_size)
    check_positive_int("--max-output-len", args.max_output_len, allow_none=True)
    tr = load_translator(args.checkpoint)
    for line in tr.translate(read_sentences(args), beam_size=args.beam_size,
                             max_output_len=args.max_output_len, alpha=args.length_penalty):
        print(line)
    return 0
