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

from dataclasses import dataclass, field

from ._names import SCORE_NAMES
from ._values import check_choice, check_positive_int

__all__ = ["DTYPES", "SCORES", "AttentionCost", "CostStep", "attention_cost", "format_cost",
           "measured_peak_bytes"]

SCORES = SCORE_NAMES  # the one list of score names (attnkit._names)

_DTYPE_BYTES = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2}
DTYPES = tuple(_DTYPE_BYTES)


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
            (the softmax is then redone on finite scores and those rows zeroed).
        dtype: element type of inputs and intermediates.
    """
    sizes = _checked_sizes(score, batch=batch, num_queries=num_queries, num_keys=num_keys,
                           query_size=query_size, key_size=key_size, value_size=value_size,
                           num_hiddens=num_hiddens, valid_lens=valid_lens, dtype=dtype)
    dims = _Dims(sizes)
    sim = _Sim()
    if score in ("dot", "scaled_dot"):
        _dot_steps(sim, dims, scaled=score == "scaled_dot")
    elif score == "bilinear":
        _bilinear_steps(sim, dims)
    elif score == "distance":
        _distance_steps(sim, dims)
    else:
        _additive_steps(sim, dims)
    _softmax_steps(sim, dims, valid_lens, empty_rows)
    out = dims.B * dims.Nq * dims.Dv * dims.e
    sim.step("output = weights V", flops=2 * dims.B * dims.Nq * dims.Nk * dims.Dv,
             read=dims.S + dims.v_b, write=out, alloc=("output", out), free=["weights"])
    return AttentionCost(score, sizes, sim.steps)


def _checked_sizes(score: str, *, batch, num_queries, num_keys, query_size, key_size,
                   value_size, num_hiddens, valid_lens, dtype) -> dict:
    """The sizes of one call, checked, with ``Dk`` and ``Dv`` defaults filled in."""
    check_choice("score", score, SCORES)
    check_choice("dtype", dtype, DTYPES)
    check_choice("valid_lens", valid_lens, (None, "1d", "2d"))
    for name, value in (("batch", batch), ("num_queries", num_queries),
                        ("num_keys", num_keys), ("query_size", query_size)):
        check_positive_int(name, value)
    dk = check_positive_int("key_size", key_size, allow_none=True) or query_size
    dv = check_positive_int("value_size", value_size, allow_none=True) or dk
    if score == "additive" and num_hiddens is None:
        raise ValueError("num_hiddens (h) is required for score 'additive'")
    check_positive_int("num_hiddens", num_hiddens, allow_none=True)
    if score in ("dot", "scaled_dot", "distance") and dk != query_size:
        raise ValueError(f"score {score!r} needs key_size == query_size; got {dk} != {query_size}")
    return dict(batch=batch, num_queries=num_queries, num_keys=num_keys, query_size=query_size,
                key_size=dk, value_size=dv, num_hiddens=num_hiddens, valid_lens=valid_lens,
                dtype=dtype)


class _Dims:
    """Sizes in the short names of the formulas, and the byte sizes of the tensors."""

    def __init__(self, sizes: dict):
        self.e = e = _DTYPE_BYTES[sizes["dtype"]]
        self.B, self.Nq, self.Nk = sizes["batch"], sizes["num_queries"], sizes["num_keys"]
        self.Dq, self.Dk, self.Dv = sizes["query_size"], sizes["key_size"], sizes["value_size"]
        self.h = sizes["num_hiddens"] or 0
        self.S = self.B * self.Nq * self.Nk * e  # one score-sized buffer
        self.q_b = self.B * self.Nq * self.Dq * e
        self.k_b = self.B * self.Nk * self.Dk * e
        self.v_b = self.B * self.Nk * self.Dv * e


def _dot_steps(sim: _Sim, d: _Dims, *, scaled: bool) -> None:
    sim.step("scores = Q Kᵀ", flops=2 * d.B * d.Nq * d.Nk * d.Dk, read=d.q_b + d.k_b,
             write=d.S, alloc=("t", d.S))
    if scaled:
        sim.step("scores / √d", flops=d.B * d.Nq * d.Nk, read=d.S, write=d.S,
                 alloc=("scores", d.S), free=["t"])
    else:
        sim.live["scores"] = sim.live.pop("t")


def _bilinear_steps(sim: _Sim, d: _Dims) -> None:
    qm = d.B * d.Nq * d.Dk * d.e
    sim.step("Q M", flops=2 * d.B * d.Nq * d.Dq * d.Dk, read=d.q_b + d.Dq * d.Dk * d.e,
             write=qm, alloc=("qm", qm))
    sim.step("scores = (Q M) Kᵀ", flops=2 * d.B * d.Nq * d.Nk * d.Dk, read=qm + d.k_b,
             write=d.S, alloc=("scores", d.S), free=["qm"])


def _distance_steps(sim: _Sim, d: _Dims) -> None:
    norms = d.B * (d.Nq + d.Nk) * d.e
    sim.step("‖q‖², ‖k‖²", flops=2 * d.B * (d.Nq * d.Dq + d.Nk * d.Dk),
             read=2 * (d.q_b + d.k_b), write=norms + d.q_b + d.k_b, alloc=("norms", norms))
    sim.step("scores = Q Kᵀ", flops=2 * d.B * d.Nq * d.Nk * d.Dk, read=d.q_b + d.k_b,
             write=d.S, alloc=("scores", d.S))
    sim.step("(2·QKᵀ − ‖q‖² − ‖k‖²) / 2σ² (in place)", flops=4 * d.B * d.Nq * d.Nk,
             read=4 * d.S, write=4 * d.S, free=["norms"])


def _additive_steps(sim: _Sim, d: _Dims) -> None:
    B, Nq, Nk, h, e = d.B, d.Nq, d.Nk, d.h, d.e
    qp, kp, F = B * Nq * h * e, B * Nk * h * e, B * Nq * Nk * h * e
    sim.step("W_q Q", flops=2 * B * Nq * d.Dq * h, read=d.q_b + h * d.Dq * e, write=qp,
             alloc=("qp", qp))
    sim.step("W_k K", flops=2 * B * Nk * d.Dk * h, read=d.k_b + h * d.Dk * e, write=kp,
             alloc=("kp", kp))
    sim.step("features = W_q q + W_k k  (B·Nq·Nk·h)", flops=B * Nq * Nk * h,
             read=qp + kp, write=F, alloc=("features", F))
    sim.step("tanh(features)", flops=B * Nq * Nk * h, read=F, write=F,
             alloc=("tanh", F), free=["features"])
    sim.step("scores = w_vᵀ tanh(...)", flops=2 * B * Nq * Nk * h, read=F + h * e, write=d.S,
             alloc=("scores", d.S), free=["tanh", "qp", "kp"])


def _softmax_steps(sim: _Sim, d: _Dims, valid_lens: str | None, empty_rows: bool) -> None:
    """Masking (with ``valid_lens``) and the softmax; leaves ``weights`` alive."""
    S, softmax_flops = d.S, 5 * d.B * d.Nq * d.Nk
    if valid_lens is None:
        sim.step("softmax", flops=softmax_flops, read=S, write=S, alloc=("weights", S),
                 free=["scores"])
        return
    m = d.B * d.Nk if valid_lens == "1d" else d.B * d.Nq * d.Nk  # bool bytes
    sim.step("mask from valid_lens", flops=m, read=d.B * 8, write=m, alloc=("mask", m))
    sim.step("~mask", flops=m, read=m, write=m, alloc=("not_mask", m))
    sim.step("masked_fill(-inf)", read=S + m, write=S, alloc=("masked", S), free=["not_mask"])
    if not empty_rows:
        sim.step("softmax", flops=softmax_flops, read=S, write=S, alloc=("weights", S),
                 free=["scores", "masked", "mask"])
        return
    # rows with no valid key show as NaN in the first softmax, which is redone on
    # finite scores and zeroed (attnkit.softmax.softmax_with_mask)
    sim.step("softmax (finds the empty rows)", flops=softmax_flops, read=S, write=S,
             alloc=("w0", S), free=["w0"])
    sim.step("where(row has a key, scores, 0)", flops=d.B * d.Nq * d.Nk, read=S, write=S,
             alloc=("finite", S), free=["masked", "mask"])
    sim.step("softmax", flops=softmax_flops, read=S, write=S, alloc=("w1", S),
             free=["finite"])
    sim.step("zero rows with no valid key", flops=d.B * d.Nq * d.Nk, read=S, write=S,
             alloc=("weights", S), free=["scores", "w1"])


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


def measured_peak_bytes(fn, *, no_grad: bool = True) -> int:
    """What the model is checked against: the peak of the CPU memory ``fn()`` allocates
    while it runs, measured with PyTorch's profiler (under ``torch.no_grad`` unless
    ``no_grad=False``). Imports torch when called; the model above needs none."""
    from ._profiling import peak_memory_bytes

    return peak_memory_bytes(fn, no_grad=no_grad)
