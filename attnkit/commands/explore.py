"""``attnkit explore``: a self-contained HTML attention explorer for one sentence pair."""

from __future__ import annotations

import argparse


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint directory or run folder")
    p.add_argument("--src", required=True, help="source sentence")
    p.add_argument("--tgt", help="target sentence (default: the model's own translation)")
    p.add_argument("--out", default="view.html", help="output HTML file (default view.html)")


def run_cli(args: argparse.Namespace) -> int:
    from ..decode.translator import capture_for_pair
    from ..viz.explorer import records_from_captures, write_explorer

    captures, src_tokens, tgt_tokens = capture_for_pair(args.checkpoint, args.src, args.tgt)
    path = write_explorer(args.out, records_from_captures(captures), src_tokens, tgt_tokens,
                          title=f"attnkit: {args.src}")
    print(f"wrote {path} ({len(captures)} attention modules); open it in a browser")
    return 0
