"""``attnkit cost``: FLOPs, memory traffic and peak memory of each scoring function.

A table of :func:`attnkit.cost.attention_cost` for the chosen sizes, one row
per scoring function (``--steps`` shows every step of the reference).
"""

from __future__ import annotations

import argparse

from ..cost import DTYPES, SCORES  # attnkit.cost imports no torch

# the scores whose keys must have the queries' size
_SAME_SIZE = ("dot", "scaled_dot", "distance")


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--score", action="append", choices=SCORES,
                   help="scoring function (repeatable; default: all five)")
    p.add_argument("--batch", "-B", type=int, default=2, help="batch size B (heads folded in)")
    p.add_argument("--num-queries", "--nq", type=int, default=1024, help="Nq")
    p.add_argument("--num-keys", "--nk", type=int, default=1024, help="Nk")
    p.add_argument("--query-size", "--dq", type=int, default=64, help="Dq")
    p.add_argument("--key-size", "--dk", type=int, default=None,
                   help=f"Dk (default Dq; {', '.join(_SAME_SIZE)} always use Dq)")
    p.add_argument("--value-size", "--dv", type=int, default=None, help="Dv (default Dk)")
    p.add_argument("--hidden-size", type=int, default=64, dest="hidden_size",
                   help="h, the hidden size of additive attention (default 64)")
    p.add_argument("--valid-lens", choices=["1d", "2d"], default=None,
                   help="include masking by valid_lens of shape (B,) or (B, Nq)")
    p.add_argument("--empty-rows", action="store_true",
                   help="with --valid-lens: some row has no valid key (one more buffer)")
    p.add_argument("--dtype", choices=DTYPES, default="float32")
    p.add_argument("--steps", action="store_true", help="show every step")


def run_cli(args: argparse.Namespace) -> int:
    from ..cost import attention_cost, format_cost

    costs = [attention_cost(
        score, batch=args.batch, num_queries=args.num_queries, num_keys=args.num_keys,
        query_size=args.query_size,
        key_size=args.query_size if score in _SAME_SIZE else args.key_size,
        value_size=args.value_size, num_hiddens=args.hidden_size, valid_lens=args.valid_lens,
        empty_rows=args.empty_rows, dtype=args.dtype) for score in args.score or SCORES]
    print(f"reference attention, B={args.batch} Nq={args.num_queries} Nk={args.num_keys} "
          f"Dq={args.query_size} h={args.hidden_size} {args.dtype}")
    print(format_cost(costs, steps=args.steps))
    return 0
