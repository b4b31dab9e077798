"""``attnkit tour``: the scoring functions on the book's toy example."""

from __future__ import annotations

import argparse


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="attnkit-demo", help="directory for the heatmap PNGs")
    p.add_argument("--seed", type=int, default=0, help="seed of the toy inputs")


def run_cli(args: argparse.Namespace) -> int:
    from .tour import run_tour

    run_tour(args.out, seed=args.seed)
    return 0
