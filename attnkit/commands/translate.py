"""``attnkit translate``: translate sentences from arguments, a file or stdin.

One output line per input line, always: lines are split on ``\\n`` only, a
blank line gives a blank line, and sentences cut to the model's limit are
named on stderr. ``--engine ctranslate2 --model DIR`` decodes with a model
written by ``attnkit export ctranslate2`` instead of attnkit's own search.
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
    p.add_argument("--checkpoint",
                   help="a checkpoint directory, or a run folder (its latest checkpoint); "
                        "required with --engine attnkit")
    p.add_argument("--engine", choices=("attnkit", "ctranslate2"), default="attnkit",
                   help="attnkit's own decoder (default), or CTranslate2 on a model written "
                        "by 'attnkit export ctranslate2' (--model)")
    p.add_argument("--model", help="with --engine ctranslate2: the exported model directory")
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


def load_engine(args: argparse.Namespace):
    """The translator ``--engine`` names, from ``--checkpoint`` or ``--model``."""
    if args.engine == "ctranslate2":
        if not args.model:
            raise ValueError("--engine ctranslate2 needs --model DIR, a directory written by "
                             "'attnkit export ctranslate2'")
        from ..export.ctranslate2_translator import load_ctranslate2
        from ..runtime import choose_threads

        return load_ctranslate2(args.model, threads=choose_threads(args.threads).count)
    if args.model:
        raise ValueError("--model is for --engine ctranslate2; --engine attnkit reads "
                         "--checkpoint")
    if not args.checkpoint:
        raise ValueError("--checkpoint is required (or --engine ctranslate2 --model DIR)")
    from ..decode.translator import load_translator

    return load_translator(args.checkpoint)


def run_cli(args: argparse.Namespace) -> int:
    check_decoding_arguments(args)
    sentences = read_input(args)
    tr = load_engine(args)
    note_overlong("attnkit translate", tr, sentences)
    with progress(len(sentences), "translate") as bar:
        lines = tr.translate(sentences, beam_size=args.beam_size,
                             max_output_len=args.max_output_len, alpha=args.length_penalty,
                             progress=bar.update)
    for line in lines:
        print(one_line(line))
    return 0
