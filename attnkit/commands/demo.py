"""``attnkit demo``: the main job on its embedded default — no files, no downloads.

Trains a small Transformer on the built-in date task until it reads held-out
dates (0.99 exact match) or a time limit,
prints sample translations, writes attention maps and an explorer page, and
ends with ``exact match: <fraction>`` (see :func:`attnkit.demo.run_demo`).
"""

from __future__ import annotations

import argparse

from ._decoding import threads_arg


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="attnkit-demo",
                   help="output directory (default attnkit-demo)")
    p.add_argument("--time-limit", type=float, default=150.0,
                   help="training stops at 0.99 held-out exact match, or after this many "
                        "seconds (default 150)")
    p.add_argument("--heldout", type=int, default=1000,
                   help="held-out examples scored for exact match (default 1000)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many training steps at the latest (default: no "
                        "count; the same steps on an idle and a busy machine)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--threads", type=threads_arg, default="auto",
                   help="CPU threads: auto (default: the cores other processes leave free, "
                        "re-checked while training) or a number")


def run_cli(args: argparse.Namespace) -> int:
    from .._values import check_positive_int
    from ..demo import run_demo

    check_positive_int("--max-steps", args.max_steps, allow_none=True)
    run_demo(out=args.out, time_limit=args.time_limit, heldout=args.heldout, seed=args.seed,
             threads=args.threads, max_steps=args.max_steps)
    return 0
