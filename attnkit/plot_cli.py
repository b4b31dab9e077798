"""``attnkit plot NAME``: render one of the figures to PNG and SVG."""

from __future__ import annotations

import argparse


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    from .viz.figures import FIGURES

    p.add_argument("name", choices=sorted(FIGURES) + ["all"],
                   help="figure to draw; 'all' draws every figure that needs no input")
    p.add_argument("--out", default="figures", help="output directory (default: figures)")
    p.add_argument("--format", action="append", choices=["png", "svg", "pdf"],
                   help="output format (repeatable; default: png and svg)")
    p.add_argument("--log", help="curves: a training log (metrics.jsonl)")
    p.add_argument("--checkpoint", help="attention-maps: a checkpoint directory")
    p.add_argument("--src", help="attention-maps: the source sentence")
    p.add_argument("--tgt", help="attention-maps: the target sentence (default: the model's "
                                 "greedy translation)")


def run_cli(args: argparse.Namespace) -> int:
    from .viz.figures import FIGURES, NEEDS_INPUT, plot

    formats = tuple(args.format or ("png", "svg"))
    if args.name == "all":
        names = [n for n in FIGURES if n not in NEEDS_INPUT]
    else:
        names = [args.name]
    for name in names:
        kwargs = {}
        if name == "curves":
            if not args.log:
                raise ValueError("plot curves needs --log PATH (a training metrics.jsonl)")
            kwargs["log"] = args.log
        if name == "attention-maps":
            if not (args.checkpoint and args.src):
                raise ValueError("plot attention-maps needs --checkpoint DIR and --src TEXT")
            from .translate import capture_for_pair

            captures, src_tokens, tgt_tokens = capture_for_pair(args.checkpoint, args.src,
                                                                args.tgt)
            kwargs.update(captures=captures, src_tokens=src_tokens, tgt_tokens=tgt_tokens)
        for path in plot(name, args.out, formats=formats, **kwargs):
            print(path)
    return 0
