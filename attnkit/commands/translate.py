"""``attnkit translate``: translate sentences from arguments, a file or stdin.

One output line per input line, always: lines are split on ``\\n`` only, a
blank line gives a blank line, and sentences cut to the model's limit are
named on stderr.
"""

from __future__ import annotations

import argparse
import sys

from ._decoding import (
    add_decoding_arguments,
    check_decoding_arguments,
    note_overlong,
    one_line,
    progress,
)


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sentences", nargs="*", help="sentences to translate (default: read "
                                                "--input, or stdin, one per line)")
    p.add_argument("--checkpoint", required=True,
                   help="a checkpoint directory, or a run folder (its latest checkpoint)")
    p.add_argument("--input", help="file with one sentence per line ('-' for stdin)")
    add_decoding_arguments(p)


def read_input(args: argparse.Namespace) -> list[str]:
    """The sentences: the arguments, else the lines of ``--input`` or of stdin."""
    from ..data.corpus import read_sentences

    if args.sentences:
        return list(args.sentences)
    if args.input and args.input != "-":
        return read_sentences(args.input, name=f"--input {args.input}")
    return read_sentences(sys.stdin.buffer.read(), name="stdin")


def run_cli(args: argparse.Namespace) -> int:
    from ..decode.translator import load_translator

    check_decoding_arguments(args)
    sentences = read_input(args)
    tr = load_translator(args.checkpoint)
    note_overlong("attnkit translate", tr, sentences)
    with progress(len(sentences), "translate") as bar:
        lines = tr.translate(sentences, beam_size=args.beam_size,
                             max_output_len=args.max_output_len, alpha=args.length_penalty,
                             progress=bar.update)
    for line in lines:
        print(one_line(line))
    return 0
