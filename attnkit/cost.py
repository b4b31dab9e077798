"""How attention's compute and memory traffic grow with its sizes (d2l §11.3 exercise 3).

:func:`attention_cost` walks the steps of the ``reference`` backend for one
scoring function and returns, per step and in total, the floating-point
operations, the bytes read and written (each tensor an op touches counted
once per op, no cache reuse), and the peak memory of the intermediates the
reference allocates (a simulation of which buffers are alive after each
step, checked against measured allocations in the tests).

The shape of the answer, for ``B`` sequences, ``Nq`` queries, ``Nk`` keys:

* dot / scaled dot / distance: ``2·B·Nq·Nk·(D + Dv)`` FLOPs; traffic and
  memory dominated by the ``B·Nq·Nk`` score matrix — memory grows with
  ``Nq·Nk``, not with ``D``;
* bilinear: adds ``2·B·Nq·Dq·Dk`` for ``qᵀM``;
* additive: ``~4·B·Nq·Nk·h`` FLOPs and a ``B·Nq·Nk·h`` feature tensor, so
  memory and traffic grow with ``Nq·Nk·h``: ``h`` times the dot-product
  figures (8 × 1024 × 1024 × 64 floats = 2 GiB).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

__all__ = ["AttentionCost", "CostStep", "attention_cost", "format_cost", "SCORES"]

SCORES = ("dot", "scaled_dot", "bilinear", "additive", "distance")

_DTYPE_BYTES = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2}


@dataclass(frozen=True)
class CostStep:
    """One operation of the reference implementation."""

    name: str
    flops: int
    bytes_read: int
    bytes_written: int
    live_bytes: int  # intermediates alive right after this step


@dataclass(frozen=True)
class AttentionCost:
    """Totals over the steps; ``peak_bytes`` is the peak of intermediates
    (outputs included, inputs and parameters excluded)."""

    score: str
    sizes: dict
    steps: list[CostStep] = field(default_factory=list)

    @property
    def flops(self) -> int:
        return sum(s.flops for s in self.steps)

    @property
    def bytes_read(self) -> int:
        return sum(s.bytes_read for s in self.steps)

    @property
    def bytes_written(self) -> int:
        return sum(s.bytes_written for s in self.steps)

    @property
    def peak_bytes(self) -> int:
        return max((s.live_bytes for s in self.steps), default=0)

    @property
    def arithmetic_intensity(self) -> float:
        """FLOPs per byte moved: low values mean memory-bound."""
        return self.flops / max(1, self.bytes_read + self.bytes_written)


class _Sim:
    """Tracks live buffers while steps are appended."""

    def __init__(self):
        self.live: dict[str, int] = {}
        self.steps: list[CostStep] = []

    def step(self, name, *, flops=0, read=0, write=0, alloc=None, free=()):
        if alloc is not None:
            self.live[alloc[0]] = alloc[1]
        peak_during = sum(self.live.values())
        for f in free:
            self.live.pop(f, None)
        self.steps.append(CostStep(name, int(flops), int(read), int(write), int(peak_during)))


def attention_cost(score: str, *, batch: int, num_queries: int, num_keys: int,
                   query_size: int, key_size: int | None = None, value_size: int | None = None,
                   num_hiddens: int | None = None, valid_lens: str | None = None,
                   empty_rows: bool = False, dtype: str = "float32") -> AttentionCost:
    """Cost of ``attention(...)`` on the reference backend.

    Args:
        score: one of ``dot``, ``scaled_dot``, ``bilinear``, ``additive``, ``distance``.
        batch: ``B`` (fold heads into it: ``B·H``).
        num_queries, num_keys: ``Nq``, ``Nk``.
        query_size, key_size, value_size: ``Dq``, ``Dk`` (default ``Dq``), ``Dv`` (default ``Dk``).
        num_hiddens: ``h`` of additive attention (required for it).
        valid_lens: ``None``, ``"1d"`` (``(B,)``) or ``"2d"`` (``(B, Nq)``): adds the
            masking steps. FLOPs are those the reference performs (every key,
            padded or not).
        empty_rows: with ``valid_lens``, whether some row has no valid key
            (one more score-sized buffer zeroes those rows).
        dtype: element type of inputs and intermediates.
    """
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}; got {score!r}")
    if dtype not in _DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {tuple(_DTYPE_BYTES)}; got {dtype!r}")
    if valid_lens not in (None, "1d", "2d"):
        raise ValueError(f"valid_lens must be None, '1d' or '2d'; got {valid_lens!r}")
    dk = key_size or query_size
    dv = value_size or dk
    sizes = dict(batch=batch, num_queries=num_queries, num_keys=num_keys, query_size=query_size,
                 key_size=dk, value_size=dv, num_hiddens=num_hiddens, valid_lens=valid_lens,
                 dtype=dtype)
    for k, v in sizes.items():
        if k in ("valid_lens", "dtype", "num_hiddens"):
            continue
        if not isinstance(v, int) or v <= 0:
            raise ValueError(f"{k} must be a positive int; got {v!r}")
    if score == "additive" and not num_hiddens:
        raise ValueError("num_hiddens (h) is required for score 'additive'")
    if score in ("dot", "scaled_dot", "distance") and dk != query_size:
        raise ValueError(f"score {score!r} needs key_size == query_size; got {dk} != {query_size}")
    e = _DTYPE_BYTES[dtype]
    B, Nq, Nk, Dq, h = batch, num_queries, num_keys, query_size, num_hiddens or 0
    S = B * Nq * Nk * e  # one score-sized buffer
    q_b, k_b, v_b = B * Nq * Dq * e, B * Nk * dk * e, B * Nk * dv * e
    sim = _Sim()

    if score in ("dot", "scaled_dot"):
        sim.step("scores = Q Kᵀ", flops=2 * B * Nq * Nk * dk, read=q_b + k_b, write=S,
                 alloc=("t", S))
        if score == "scaled_dot":
            sim.step("scores / √d", flops=B * Nq * Nk, read=S, write=S, alloc=("scores", S),
                     free=["t"])
        else:
            sim.live["scores"] = sim.live.pop("t")
    elif score == "bilinear":
        qm = B * Nq * dk * e
        sim.step("Q M", flops=2 * B * Nq * Dq * dk, read=q_b + Dq * dk * e, write=qm,
                 alloc=("qm", qm))
        sim.step("scores = (Q M) Kᵀ", flops=2 * B * Nq * Nk * dk, read=qm + k_b, write=S,
                 alloc=("scores", S), free=["qm"])
    elif score == "distance":
        sim.step("‖q‖², ‖k‖²", flops=2 * B * (Nq * Dq + Nk * dk), read=2 * (q_b + k_b),
                 write=B * (Nq + Nk) * e + q_b + k_b, alloc=("norms", B * (Nq + Nk) * e))
        sim.step("scores = Q Kᵀ", flops=2 * B * Nq * Nk * dk, read=q_b + k_b, write=S,
                 alloc=("scores", S))
        sim.step("(2·QKᵀ − ‖q‖² − ‖k‖²) / 2σ² (in place)", flops=4 * B * Nq * Nk, read=4 * S,
                 write=4 * S, free=["norms"])
    else:  # additive
        qp, kp, F = B * Nq * h * e, B * Nk * h * e, B * Nq * Nk * h * e
        sim.step("W_q Q", flops=2 * B * Nq * Dq * h, read=q_b + h * Dq * e, write=qp,
                 alloc=("qp", qp))
        sim.step("W_k K", flops=2 * B * Nk * dk * h, read=k_b + h * dk * e, write=kp,
                 alloc=("kp", kp))
        sim.step("features = W_q q + W_k k  (B·Nq·Nk·h)", flops=B * Nq * Nk * h,
                 read=qp + kp, write=F, alloc=("features", F))
        sim.step("tanh(features)", flops=B * Nq * Nk * h, read=F, write=F,
                 alloc=("tanh", F), free=["features"])
        sim.step("scores = w_vᵀ tanh(...)", flops=2 * B * Nq * Nk * h, read=F + h * e, write=S,
                 alloc=("scores", S), free=["tanh", "qp", "kp"])

    if valid_lens is None:
        sim.step("softmax", flops=5 * B * Nq * Nk, read=S, write=S, alloc=("weights", S),
                 free=["scores"])
    else:
        m = B * Nk if valid_lens == "1d" else B * Nq * Nk  # bool bytes
        sim.step("mask from valid_lens", flops=m, read=B * 8, write=m, alloc=("mask", m))
        sim.step("~mask & row_has_key", flops=2 * m, read=m, write=m, alloc=("fill", m))
        sim.step("masked_fill(-inf)", read=S + m, write=S, alloc=("masked", S),
                 free=["fill"])
        if empty_rows:
            sim.step("softmax", flops=5 * B * Nq * Nk, read=S, write=S, alloc=("w0", S))
            sim.step("zero rows with no valid key", flops=B * Nq * Nk, read=S, write=S,
                     alloc=("weights", S), free=["scores", "masked", "mask", "w0"])
        else:
            sim.step("softmax", flops=5 * B * Nq * Nk, read=S, write=S, alloc=("weights", S),
                     free=["scores", "masked", "mask"])
    out = B * Nq * dv * e
    sim.step("output = weights V", flops=2 * B * Nq * Nk * dv, read=S + v_b, write=out,
             alloc=("output", out), free=["weights"])
    return AttentionCost(score, sizes, sim.steps)


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def format_cost(costs: list[AttentionCost], *, steps: bool = False) -> str:
    """A plain-text table of costs (one row per score)."""
    head = (f"{'score':<11} {'GFLOP':>10} {'read':>11} {'written':>11} {'peak mem':>11} "
            f"{'FLOP/B':>7}")
    lines = [head, "-" * len(head)]
    for c in costs:
        lines.append(
            f"{c.score:<11} {c.flops / 1e9:>10.3f} {_fmt_bytes(c.bytes_read):>11} "
            f"{_fmt_bytes(c.bytes_written):>11} {_fmt_bytes(c.peak_bytes):>11} "
            f"{c.arithmetic_intensity:>7.2f}")
        if steps:
            for s in c.steps:
                lines.append(f"    {s.name:<44} {s.flops / 1e9:>9.3f} GFLOP  "
                             f"live {_fmt_bytes(s.live_bytes)}")
    return "\n".join(lines)


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--score", action="append", choices=SCORES,
                   help="scoring function (repeatable; default: all five)")
    p.add_argument("--batch", "-B", type=int, default=2, help="batch size B (heads folded in)")
    p.add_argument("--num-queries", "--nq", type=int, default=1024, help="Nq")
    p.add_argument("--num-keys", "--nk", type=int, default=1024, help="Nk")
    p.add_argument("--query-size", "--dq", type=int, default=64, help="Dq")
    p.add_argument("--key-size", "--dk", type=int, default=None, help="Dk (default Dq)")
    p.add_argument("--value-size", "--dv", type=int, default=None, help="Dv (default Dk)")
    p.add_argument("--num-hiddens", "-H", type=int, default=64, help="h of additive attention")
    p.add_argument("--valid-lens", choices=["1d", "2d"], default=None,
                   help="include masking by valid_lens of shape (B,) or (B, Nq)")
    p.add_argument("--empty-rows", action="store_true",
                   help="with --valid-lens: some row has no valid key (one more buffer)")
    p.add_argument("--dtype", choices=list(_DTYPE_BYTES), default="float32")
    p.add_argument("--steps", action="store_true", help="show every step")


def run_cli(args: argparse.Namespace) -> int:
    costs = []
    for score in args.score or SCORES:
        dk = args.key_size
        if score in ("dot", "scaled_dot", "distance"):
            dk = args.query_size
        costs.append(attention_cost(
            score, batch=args.batch, num_queries=args.num_queries, num_keys=args.num_keys,
            query_size=args.query_size, key_size=dk, value_size=args.value_size,
            num_hiddens=args.num_hiddens, valid_lens=args.valid_lens,
            empty_rows=args.empty_rows, dtype=args.dtype))
    print(f"reference attention, B={args.batch} Nq={args.num_queries} Nk={args.num_keys} "
          f"Dq={args.query_size} h={args.num_hiddens} {args.dtype}")
    print(format_cost(costs, steps=args.steps))
    return 0
