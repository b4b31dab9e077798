"""``attnkit demo``: the main job on its embedded default — no files, no downloads.

Trains a small Transformer on the built-in date task for a fixed time budget,
prints sample translations, writes attention maps and an explorer page, and
ends with ``exact match: <fraction>`` (see :func:`attnkit.demo.run_demo`).
"""

from __future__ import annotations

import argparse


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="attnkit-demo",
                   help="output directory (default attnkit-demo)")
    p.add_argument("--time-limit", type=float, default=140.0,
                   help="training time budget in seconds (default 140)")
    p.add_argument("--heldout", type=int, default=1000,
                   help="held-out examples scored for exact match (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: the tiny model gains little from more, "
                        "and one thread does not stall when other programs use the cores)")


def run_cli(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(out=args.out, time_limit=args.time_limit, heldout=args.heldout, seed=args.seed,
             threads=args.threads)
    return 0
