"""``attnkit plot NAME``: render one of the figures to PNG and SVG.

The figures are :data:`attnkit.viz.figures.FIGURES`; their names are listed
here too, so that ``--help`` needs no plotting library (a test keeps the two
lists equal).
"""

from __future__ import annotations

import argparse
import os

#: the names of :data:`attnkit.viz.figures.FIGURES`
FIGURE_NAMES = ("attention-maps", "causal-mask", "cost", "curves", "lr-schedule",
                "masked-softmax", "positional-encoding", "scaling", "scores")


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", choices=[*FIGURE_NAMES, "all"],
                   help="figure to draw; 'all' draws every figure that needs no input")
    p.add_argument("--out", default="figures", help="output directory (default: figures)")
    p.add_argument("--format", action="append", choices=["png", "svg", "pdf"],
                   help="output format (repeatable; default: png and svg)")
    p.add_argument("--log", help="curves: a training log (metrics.jsonl)")
    p.add_argument("--checkpoint", help="attention-maps: a checkpoint directory")
    p.add_argument("--src", help="attention-maps: the source sentence")
    p.add_argument("--tgt", help="attention-maps: the target sentence (default: the model's "
                                 "greedy translation)")


def _inputs(name: str, args: argparse.Namespace) -> dict:
    """The keyword arguments figure ``name`` needs, from the options."""
    if name == "curves":
        if not args.log:
            raise ValueError("plot curves needs --log PATH (a training metrics.jsonl)")
        return {"log": args.log}
    if name == "attention-maps":
        if not (args.checkpoint and args.src):
            raise ValueError("plot attention-maps needs --checkpoint DIR and --src TEXT")
        from ..decode.translator import capture_for_pair

        captures, src_tokens, tgt_tokens = capture_for_pair(args.checkpoint, args.src, args.tgt)
        return {"captures": captures, "src_tokens": src_tokens, "tgt_tokens": tgt_tokens}
    return {}


def _check_outputs(args: argparse.Namespace, names: list[str], formats: tuple) -> None:
    """Refuse a ``--out`` that is an input, or lies in the checkpoint read, and a figure
    file that would overwrite ``--log`` (``--out`` may hold the log)."""
    from pathlib import Path

    from .._io import check_not_an_input
    from ._decoding import checkpoint_inputs

    inputs = [("--log", args.log), *checkpoint_inputs(args.checkpoint)]
    check_not_an_input(args.out, "--out", inputs)
    for name in names:
        for fmt in formats:
            check_not_an_input(Path(args.out) / f"{name}.{fmt}", "--out", inputs)


def run_cli(args: argparse.Namespace) -> int:
    from .._io import check_regular_file, ensure_writable_dir
    from ..viz.figures import FIGURES, NEEDS_INPUT, plot

    formats = tuple(args.format or ("png", "svg"))
    names = [n for n in FIGURES if n not in NEEDS_INPUT] if args.name == "all" else [args.name]
    _check_outputs(args, names, formats)
    if args.log is not None:  # before --out is made
        check_regular_file(args.log, "--log", fifo=True)  # /dev/zero would never end
        if not os.path.exists(args.log):
            raise FileNotFoundError(f"--log: no such file: {args.log}")
    ensure_writable_dir(args.out, "--out")  # before any figure is computed
    for name in names:
        for path in plot(name, args.out, formats=formats, **_inputs(name, args)):
            print(path)
    return 0
