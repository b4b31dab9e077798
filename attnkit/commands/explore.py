"""``attnkit explore``: a self-contained HTML attention explorer for one sentence pair."""

from __future__ import annotations

import argparse


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint directory, run folder (its "
                                                         "latest checkpoint) or RUN/best")
    p.add_argument("--src", required=True, help="source sentence")
    p.add_argument("--tgt", help="target sentence (default: the model's own translation)")
    p.add_argument("--out", default="view.html", help="output HTML file (default view.html)")
    p.add_argument("--max-tokens", type=int, default=128,
                   help="tokens of each sentence shown (default 128; the page says what was cut)")


def run_cli(args: argparse.Namespace) -> int:
    from .._io import check_not_an_input, check_writable_file
    from .._values import check_positive_int
    from ..decode.translator import load_translator, positions_of
    from ..viz.explorer import check_sentence_lengths, records_from_captures, write_explorer
    from ._decoding import checkpoint_inputs, progress_bar

    check_not_an_input(args.out, "--out", checkpoint_inputs(args.checkpoint))
    check_writable_file(args.out, "--out")
    check_positive_int("--max-tokens", args.max_tokens)
    with progress_bar(3, "explore: load, translate, capture") as bar:
        translator = load_translator(args.checkpoint)
        bar.update(1)
        tgt = args.tgt if args.tgt is not None else translator.translate([args.src])[0]
        tok = translator.tokenizers
        check_sentence_lengths(len(tok.src.encode(args.src)) + 1, len(tok.tgt.encode(tgt)) + 1,
                               positions_of(translator.run.model))
        bar.update(1)
        captures, src_tokens, tgt_tokens = translator.capture(args.src, tgt)
        path = write_explorer(args.out, records_from_captures(captures), src_tokens,
                              tgt_tokens, title=f"attnkit: {args.src}",
                              max_tokens=args.max_tokens)
        bar.update(1)
    print(f"wrote {path} ({len(captures)} attention modules); open it in a browser")
    return 0
