"""The ``sdpa`` backend: PyTorch's fused attention, with padding that costs nothing.

Serves every score that is a dot product in disguise (:meth:`Score.as_dot`):
dot, scaled dot, bilinear (``M`` folded into the queries, ``q' = qM``) and
distance/RBF (scaled dot ``qᵀk/σ²`` plus a per-key bias ``−‖k‖²/(2σ²)``;
the ``‖q‖²`` term is constant per query and cancels in the softmax). The
work is done by :func:`torch.nn.functional.scaled_dot_product_attention`
(SDPA), which is differentiable, so forward and backward both run fused.

How padding is skipped
----------------------
``valid_lens`` (``(B,)`` or ``(B, Nq)``), ``query_valid_lens`` and ``causal``
are all *prefix* masks: row ``i`` of sequence ``b`` may attend keys
``[0, e[b, i])`` with ::

    e[b, i] = min(valid_len[b(, i)], causal limit of row i)   (0 for padded queries)

(:meth:`AttentionCall.prefix_lengths`), so each sequence needs only the rows
``[r0, r1)`` with ``e > 0`` and the keys ``[0, max e)``. Per sequence the rows are classified as

* ``dense``: every row sees the same ``K`` keys -> SDPA with no mask;
* ``causal``: ``e = min(i - r0 + 1, K)`` -> SDPA with ``is_causal=True``
  (top-left causal, and bottom-right causal with ``Nq >= Nk``);
* ``masked``: anything else -> SDPA with a boolean mask over ``(r1 - r0, K)``.

Sequences with the same ``(r0, r1, K, kind)`` are batched into one call, and
sequences with no row to compute cost nothing (their output is zeros). When
there are many small groups a single call over the whole batch with a mask
is cheaper than many calls; :func:`_plan` compares the two with a simple
cost model (per-call overhead plus FLOPs at a fixed rate) and picks the
cheaper. A user ``mask`` always takes one masked call.

Threads: inside :func:`attnkit.runtime.pinned_threads`, on the CPU, a call of
two or more groups with at least ``_WORKERS_MIN_FLOPS`` of work and no dropout
shares its groups out to worker threads (as many as torch's thread setting,
balanced by work, each running its SDPA calls on one intra-op thread), forward
and backward; elsewhere the groups run in order on the calling thread, which
leaves torch's thread setting alone. Why: each
multi-threaded SDPA call ends in a barrier that waits for all its threads, so
on a CPU shared with other processes in-order calls wait for a descheduled
thread at every call (and can fall behind one masked call); workers on one
thread each do not, and on an idle machine they are no slower. BENCHMARKS.md
("Scaled dot with `valid_lens`: where the forward time goes, and worker
threads") has the figures.

Distance scores pass their key bias as a float ``attn_mask``; when the keys
need gradients, SDPA differentiates through the mask with its unfused
(math) kernel, so distance forward+backward costs more than scaled dot.

Second-order gradients (``create_graph=True``, e.g. a gradient penalty): the
fused kernels' backward has no derivative, so such a backward recomputes the
output as one masked call on SDPA's math kernel and differentiates that
(:class:`_TwiceDifferentiable`); exact, and refused naming the backend with
dropout (whose masks cannot be redrawn). First-order gradients stay fused.

Rows with nothing to attend to give zero output rows and zero gradients,
as in ``reference``. fp16/bf16 inputs are computed by SDPA with float32
accumulation and returned in the input dtype.

Attention-weight dropout on float32 and bfloat16 CPU tensors (training) does not call
SDPA: dropout forces its math kernel, which draws the mask with ``bernoulli_``, copies the
transposed operands, and computes a bfloat16 call in float32 with copies of every operand
(cast up, cast back); the same arithmetic as separate ops (:func:`_dropout_attention`:
scores and softmax in float32, the weights rounded to the inputs' dtype for the product
with the values, as FlashAttention and attnkit's Triton kernels round them, dropout by
:mod:`attnkit.kernels.cpu_dropout`, whose drop probability is ``p`` rounded to a multiple
of 2^-16, as :class:`attnkit.nn.Dropout`'s) costs half in bfloat16 and two thirds in float32
per call. BENCHMARKS.md ("bf16 where the CPU runs it natively") has the figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..kernels import cpu_dropout
from ..scores import DotForm
from ._workers import balance, in_workers, worker_count
from .base import AttentionCall, Backend, second_order_error, values_reason

__all__ = ["SDPABackend"]

#: Cost model of :func:`_plan`: fixed cost of one SDPA call (dispatch, slicing,
#: output assembly) in FLOP-equivalents at the kernel's rate, and the extra cost
#: factor of a boolean mask (BENCHMARKS.md, "Figures behind choices in the code",
#: has the time and rate the first stands for).
_CALL_OVERHEAD_FLOPS = 5e6
_MASK_FACTOR = 1.15
#: Cost of gathering one element into group order (and scattering it back, and
#: the same for the gradient), in FLOP-equivalents: memory traffic, not FLOPs.
#: For many short sequences the gathers can cost more than the attention they save,
#: so the planner must see them (BENCHMARKS.md, "Training throughput on bucketed
#: batches", has the case).
_MOVE_FLOPS_PER_ELEMENT = 100.0


@dataclass
class _Group:
    """Sequences ``index`` sharing rows ``[r0, r1)``, keys ``[0, K)`` and a kind."""

    index: list[int]
    r0: int
    r1: int
    K: int
    kind: str  # "dense" | "causal" | "masked" | "empty"

    @property
    def area(self) -> float:
        """(query, key) pairs the group's call computes (half the rectangle if causal)."""
        return len(self.index) * (self.r1 - self.r0) * self.K * (
            0.5 if self.kind == "causal" else 1.0)


def _as_dot(call: AttentionCall) -> DotForm | None:
    q, k = call.queries, call.keys
    return call.score.as_dot(q[..., :0, :], k[..., :0, :])


class SDPABackend(Backend):
    """Dot-form scores on :func:`torch.nn.functional.scaled_dot_product_attention`."""

    name = "sdpa"
    handles_query_valid_lens = True

    def unsupported_reason(self, call: AttentionCall) -> str | None:
        if values_reason(call) is not None:
            return values_reason(call)
        if call.values is None:
            return "needs values (weights-only calls go to reference)"
        if _as_dot(call) is None:
            return (f"score '{call.score.name}' is not a dot product in disguise "
                    "(Score.as_dot returns None); use 'chunked'")
        return None

    def forward(self, call: AttentionCall) -> torch.Tensor:
        params = [p for p in call.score.parameters() if p.requires_grad]
        tensors = (call.queries, call.keys, call.values, *params)
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            return _TwiceDifferentiable.apply(call, *tensors)
        return _attend(call, call.queries, call.keys, call.values)


def _attend(call: AttentionCall, queries, keys, values, *, grouped: bool = True) -> torch.Tensor:
    """The attention output ``(*batch, Nq, Dv)`` of ``call`` on these tensors: grouped calls
    (padding skipped), or with ``grouped=False`` one masked call (the form double backward
    differentiates)."""
    form = call.score.as_dot(queries, keys)
    batch = call.batch_shape
    B, P = batch[0], math.prod(batch[1:])  # P: the dims after B (heads…) folded
    q = _to_4d(form.queries, batch, B, P)  # (B, P, Nq, Dq')
    k = _to_4d(form.keys, batch, B, P)  # (B, P, Nk, Dk')
    v = _to_4d(values, batch, B, P)  # (B, P, Nk, Dv)
    bias = None
    if form.key_bias is not None:
        bias = form.key_bias.to(q.dtype).expand(*batch, call.num_keys)
        bias = bias.reshape(B, P, 1, call.num_keys)  # (B, P, 1, Nk)
    if call.mask is not None or not grouped:
        out = _masked_call(call, q, k, v, bias, form.scale)
    else:
        out = _grouped_call(call, q, k, v, bias, form.scale)
    return out.reshape(*batch, call.num_queries, v.shape[-1])  # (*batch, Nq, Dv)


class _TwiceDifferentiable(torch.autograd.Function):
    """:func:`_attend` with SDPA's fused kernels for the output and first-order gradients,
    and a second-order graph that is exact.

    The fused kernels' backward has no derivative (torch raises "derivative for
    aten::_scaled_dot_product_flash_attention_for_cpu_backward is not implemented"), and
    the grouped calls cut their graphs from the inputs. So forward keeps its graph on
    detached inputs, which first-order backward differentiates; a backward under
    ``create_graph=True`` instead recomputes the output from the inputs themselves as one
    masked call on SDPA's math kernel (plain differentiable ops) and differentiates that
    with a graph. Dropout masks cannot be drawn again there, so that case is refused.
    """

    @staticmethod
    def forward(ctx, call: AttentionCall, queries, keys, values, *params):
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(t.requires_grad)
                      for t in (queries, keys, values)]
            out = _attend(call, *leaves)
        ctx.call, ctx.params, ctx.leaves, ctx.out = call, params, leaves, out
        ctx.save_for_backward(queries, keys, values)
        return out.detach()

    @staticmethod
    def backward(ctx, grad_out):
        second = torch.is_grad_enabled()  # create_graph=True
        leaves, out = ctx.leaves, ctx.out
        if second:
            if ctx.call.dropout_p > 0:
                raise second_order_error("sdpa", "with dropout_p > 0 the fused kernel's "
                                         "dropout masks cannot be drawn again")
            leaves = list(ctx.saved_tensors)
            with sdpa_kernel(SDPBackend.MATH):
                out = _attend(ctx.call, *leaves, grouped=False)
        inputs = [*leaves, *ctx.params]
        wanted = [i for i in range(len(inputs)) if ctx.needs_input_grad[i + 1]]
        # retain: the graph may be differentiated again (retain_graph=True, gradcheck)
        got = torch.autograd.grad(out, [inputs[i] for i in wanted], grad_out,
                                  retain_graph=True, create_graph=second, allow_unused=True)
        grads = [None] * len(inputs)
        for i, g in zip(wanted, got):
            grads[i] = torch.zeros_like(inputs[i]) if g is None else g
        return (None, *grads)


def _to_4d(x: torch.Tensor, batch: tuple[int, ...], B: int, P: int) -> torch.Tensor:
    x = x.expand(*batch, *x.shape[-2:])  # (*batch, N, D), a view
    if len(batch) == 2:
        return x
    return x.reshape(B, P, *x.shape[-2:])  # (B, P, N, D)


# --------------------------------------------------------------------- planning




def _plan(call: AttentionCall, e: torch.Tensor, work_per_qk: float,
          move_per_seq: float = 0.0) -> list[_Group]:
    """Group sequences by ``(r0, r1, K, kind)``; or one masked group if cheaper.

    ``move_per_seq``: the cost of moving one sequence's inputs and output into
    group order and back, paid by every sequence when the groups are not
    already contiguous runs of the batch.
    """
    B, Nq = e.shape
    rows = torch.arange(Nq, device=e.device)
    nonempty = e > 0  # (B, Nq)
    any_row = nonempty.any(-1)  # (B,)
    r0 = torch.where(nonempty, rows, Nq).amin(-1)  # (B,)
    r1 = torch.where(nonempty, rows + 1, 0).amax(-1)  # (B,)
    K = e.amax(-1)  # (B,)
    in_span = (rows >= r0[:, None]) & (rows < r1[:, None])  # (B, Nq)
    dense = ((e == K[:, None]) | ~in_span).all(-1)  # (B,)
    causal_e = torch.minimum(rows - r0[:, None] + 1, K[:, None])  # (B, Nq)
    causal = ((e == causal_e) | ~in_span).all(-1)  # (B,)
    summary = torch.stack([any_row.long(), r0, r1, K, dense.long(), causal.long()], -1).tolist()

    groups: dict[tuple, _Group] = {}
    cost = 0.0
    for b, (has, g0, g1, gk, is_dense, is_causal) in enumerate(summary):
        if not has:
            key = (0, 0, 0, "empty")
        else:
            kind = "dense" if is_dense else "causal" if is_causal else "masked"
            key = (g0, g1, gk, kind)
        if key not in groups:
            groups[key] = _Group([], *key)
            cost += _CALL_OVERHEAD_FLOPS if key[3] != "empty" else 0.0
        groups[key].index.append(b)
        if has:
            area = (g1 - g0) * gk * (0.5 if key[3] == "causal" else 1.0)
            cost += area * work_per_qk * (_MASK_FACTOR if key[3] == "masked" else 1.0)
    order = [b for grp in groups.values() for b in grp.index]
    if order != list(range(B)):
        cost += B * move_per_seq
    if len(groups) > 1:
        live = [b for b, s in enumerate(summary) if s[0]]
        if live:
            lo = min(summary[b][1] for b in live)
            hi = max(summary[b][2] for b in live)
            kmax = max(summary[b][3] for b in live)
            one = _CALL_OVERHEAD_FLOPS + B * (hi - lo) * kmax * work_per_qk * _MASK_FACTOR
            if one < cost:
                return [_Group(list(range(B)), lo, hi, kmax, "masked")]
    return list(groups.values())


# -------------------------------------------------------------------- execution


def _grouped_call(call, q, k, v, bias, scale) -> torch.Tensor:
    """Attention over only the rows and keys each sequence needs; ``(B, P, Nq, Dv)``.

    The batch is reordered once so that every group is a contiguous run;
    :class:`_Grouped` then runs one SDPA call per group on views and writes
    into one preallocated output (and, in backward, into one preallocated
    gradient per input): no per-group zero-filled full-size gradients, no
    concatenations.
    """
    if q.shape[2] == 1:
        return _one_query_call(call, q, k, v, bias, scale)
    B = q.shape[0]
    e = call.prefix_lengths()  # (B, Nq)
    P, Nq, Nk = q.shape[1], q.shape[2], k.shape[2]
    work = 2.0 * P * (q.shape[-1] + v.shape[-1])  # FLOPs per (query, key) pair
    moved = 2 * P * (Nq * (q.shape[-1] + v.shape[-1]) + Nk * (k.shape[-1] + v.shape[-1]))
    groups = _plan(call, e, work, moved * _MOVE_FLOPS_PER_ELEMENT)
    order = [b for grp in groups for b in grp.index]
    identity = order == list(range(B))
    if not identity:
        perm = torch.tensor(order, device=q.device)
        q, k, v, e = (x.index_select(0, perm) for x in (q, k, v, e))  # groups contiguous
        bias = None if bias is None else bias.index_select(0, perm)
    spec = _GroupSpec(groups, e, call.dropout_p, scale, _worker_count(call, q, groups, work))
    tensors = _autocast_inputs((q, k, v) if bias is None else (q, k, v, bias))
    only = groups[0] if len(groups) == 1 else None
    if only is not None and only.kind != "empty" and (only.r0, only.r1, only.K) == (0, Nq, Nk):
        # one call over the whole batch: plain autograd, no bookkeeping
        return _group_attention(spec, only, 0, B, *tensors)  # (B, P, Nq, Dv)
    out = _Grouped.apply(spec, *tensors)  # (B, P, Nq, Dv) in `order`
    if not identity:
        inverse = torch.empty(B, dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(B)
        out = out.index_select(0, inverse.to(out.device))
    return out


#: Groups are shared out to worker threads when a call has at least this many FLOPs:
#: well above the cost of handing groups to threads (BENCHMARKS.md, "Figures behind
#: choices in the code", has the time it stands for).
_WORKERS_MIN_FLOPS = 5e7


def _worker_count(call: AttentionCall, q: torch.Tensor, groups: list[_Group],
                  work: float) -> int:
    """Worker threads for the groups (:func:`~attnkit.backends._workers.worker_count`) for
    a CPU call of two or more groups with enough work and no dropout (SDPA draws dropout
    from the global generator, whose order must not depend on thread timing); else 1 (in
    order, this thread)."""
    live = [g for g in groups if g.kind != "empty"]
    if q.device.type != "cpu" or call.dropout_p > 0 or len(live) < 2:
        return 1
    flops = sum(g.area for g in live) * work
    return worker_count(len(live)) if flops >= _WORKERS_MIN_FLOPS else 1


def _autocast_inputs(tensors: tuple) -> tuple:
    """The tensors in autocast's dtype when autocast is on (as it would cast SDPA's)."""
    device_type = tensors[0].device.type
    if not torch.is_autocast_enabled(device_type):
        return tensors
    dtype = torch.get_autocast_dtype(device_type)
    return tuple(t.to(dtype) for t in tensors)


def _one_query_call(call, q, k, v, bias, scale) -> torch.Tensor:
    """One query per sequence (a decoding step): the whole batch as one group, masked
    unless every sequence sees all keys. With one row per sequence, grouping saves
    nothing and planning and reordering would cost more than the attention;
    ``(B, P, 1, Dv)``."""
    e = call.prefix_lengths()  # (B, 1) keys each sequence may attend
    B, Nk = q.shape[0], k.shape[2]
    kind = "dense" if bool((e == Nk).all()) else "masked"
    grp = _Group(list(range(B)), 0, 1, Nk, kind)
    spec = _GroupSpec([grp], e, call.dropout_p, scale)
    tensors = _autocast_inputs((q, k, v) if bias is None else (q, k, v, bias))
    return _group_attention(spec, grp, 0, B, *tensors)


@dataclass
class _GroupSpec:
    groups: list[_Group]
    e: torch.Tensor  # (B, Nq) prefix lengths, in group order
    dropout_p: float
    scale: float
    workers: int = 1  # threads that share out the groups (1: the calling thread, in order)


class _Grouped(torch.autograd.Function):
    """One SDPA call per group of sequences; each group's autograd graph is kept
    and differentiated group by group in backward. With ``spec.workers > 1`` the groups
    are shared out to worker threads (one intra-op thread each), forward and backward."""

    @staticmethod
    def forward(ctx, spec: _GroupSpec, q, k, v, bias=None):
        B, P, Nq, Dv = q.shape[0], q.shape[1], q.shape[2], v.shape[-1]
        out = q.new_empty(B, P, Nq, Dv)  # rows never computed are zeroed below, not all
        track = any(ctx.needs_input_grad[1:])  # keep each group's graph only for training
        items, empty, start = [], [], 0
        for grp in spec.groups:
            b0, b1 = start, start + len(grp.index)
            start = b1
            if grp.kind == "empty":
                out[b0:b1].zero_()
                empty.append((b0, b1))
                continue
            out[b0:b1, :, :grp.r0].zero_()
            out[b0:b1, :, grp.r1:].zero_()
            items.append((b0, b1, grp))

        def run(b0, b1, grp):
            leaves = [q[b0:b1, :, grp.r0:grp.r1], k[b0:b1, :, :grp.K], v[b0:b1, :, :grp.K]]
            if bias is not None:
                leaves.append(bias[b0:b1, ..., :grp.K])  # (n, P, 1, K)
            leaves = [t.detach().requires_grad_(track) for t in leaves]
            res = _group_attention(spec, grp, b0, b1, *leaves)  # (n, P, rows, Dv)
            out[b0:b1, :, grp.r0:grp.r1] = res.detach()
            return (b0, b1, grp, leaves, res) if track else None

        graphs = [g for g in _each(spec, items, run, grad=track) if g is not None]
        ctx.graphs, ctx.empty, ctx.spec = graphs, empty, spec
        ctx.shapes = (q.shape, k.shape, v.shape, None if bias is None else bias.shape)
        ctx.needs = ctx.needs_input_grad[1:]
        return out

    @staticmethod
    def backward(ctx, grad_out):
        shapes = ctx.shapes
        # what no group writes is zeroed piece by piece, not the whole tensors first
        grads = [None if s is None or not need else grad_out.new_empty(s)
                 for s, need in zip(shapes, ctx.needs)]
        for b0, b1 in ctx.empty:
            for g in grads:
                if g is not None:
                    g[b0:b1].zero_()

        def run(b0, b1, grp, leaves, res):
            _zero_uncovered(grads, b0, b1, grp)
            wanted = [i for i, g in enumerate(grads) if g is not None and i < len(leaves)]
            # retain: the outer graph may be differentiated again (retain_graph=True,
            # gradcheck); the group graphs are freed with ctx when the outer graph is
            got = torch.autograd.grad(res, [leaves[i] for i in wanted],
                                      grad_out[b0:b1, :, grp.r0:grp.r1], retain_graph=True)
            for i, g in zip(wanted, got):
                if i == 0:
                    grads[0][b0:b1, :, grp.r0:grp.r1] = g
                elif i in (1, 2):
                    grads[i][b0:b1, :, :grp.K] = g
                else:
                    grads[3][b0:b1, ..., :grp.K] = g

        _each(ctx.spec, ctx.graphs, run, grad=False)
        return (None, *grads)


def _each(spec: _GroupSpec, items: list[tuple], run, *, grad: bool) -> list:
    """``[run(*item) for item in items]`` (``item[:3]`` = ``b0, b1, group``), in order on
    this thread, or shared out to ``spec.workers`` threads balanced by each group's work
    (every ``run`` writes its own sequences only)."""
    if spec.workers <= 1 or len(items) <= 1:
        with torch.set_grad_enabled(grad):
            return [run(*item) for item in items]
    runs = [[items[i] for i in r] for r in balance([g.area for _, _, g, *_ in items],
                                                    spec.workers)]
    parts = in_workers(runs, lambda part: [run(*item) for item in part], grad=grad)
    return [x for part in parts for x in part]


def _zero_uncovered(grads: list, b0: int, b1: int, grp: _Group) -> None:
    """Zero the parts of the gradients of sequences ``[b0, b1)`` that ``grp`` does not
    write: query rows outside ``[r0, r1)``, keys from ``K`` on."""
    if grads[0] is not None:
        grads[0][b0:b1, :, :grp.r0].zero_()
        grads[0][b0:b1, :, grp.r1:].zero_()
    for g in grads[1:3]:
        if g is not None:
            g[b0:b1, :, grp.K:].zero_()
    if len(grads) > 3 and grads[3] is not None:
        grads[3][b0:b1, ..., grp.K:].zero_()


def _group_attention(spec: _GroupSpec, grp: _Group, b0: int, b1: int, qs, ks, vs,
                     bs=None) -> torch.Tensor:
    """SDPA for one group: ``(n, P, rows, Dq')`` queries against ``K`` keys."""
    mask, row_ok = None, None
    if grp.kind == "masked" or (grp.kind == "causal" and bs is not None):
        er = spec.e[b0:b1, grp.r0:grp.r1]  # (n, rows)
        row_ok = er > 0
        er = torch.where(row_ok, er, grp.K)  # empty rows attend all, zeroed below
        mask = torch.arange(grp.K, device=qs.device) < er[:, None, :, None]  # (n,1,rows,K)
        if bool(row_ok.all()):
            row_ok = None
    if bs is not None:
        mask = bs if mask is None else bs.masked_fill(~mask, float("-inf"))
    out = _sdpa(qs, ks, vs, mask, spec.dropout_p, grp.kind == "causal" and mask is None,
                spec.scale)  # (n, P, rows, Dv)
    if row_ok is not None:
        out = out * row_ok[:, None, :, None].to(out.dtype)  # empty rows -> 0
    return out


def _masked_call(call, q, k, v, bias, scale) -> torch.Tensor:
    """One SDPA call with the full boolean mask (used when the caller gives a mask, and to
    recompute any call for double backward)."""
    B, P, Nq, Nk = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
    mask = call.full_mask()  # broadcastable to (*batch, Nq, Nk)
    if mask is None:  # every key (double backward's recomputation of an unmasked call)
        mask = torch.ones((), dtype=torch.bool, device=q.device)
    mask = mask.expand(*call.batch_shape, Nq, Nk).reshape(B, P, Nq, Nk)
    row_ok = mask.any(-1, keepdim=True)  # (B, P, Nq, 1)
    mask = mask | ~row_ok  # empty rows attend all keys, zeroed below
    attn_mask = mask if bias is None else bias.masked_fill(~mask, float("-inf"))
    out = _sdpa(q, k, v, attn_mask, call.dropout_p, False, scale)
    return out * row_ok.to(out.dtype)  # (B, P, Nq, Dv)


#: dtypes whose CPU attention with dropout runs as separate ops (:func:`_sdpa`)
_SEPARATE_OPS = (torch.bfloat16, torch.float32)


def _sdpa(q, k, v, attn_mask, dropout_p: float, is_causal: bool, scale) -> torch.Tensor:
    """:func:`torch.nn.functional.scaled_dot_product_attention`, except float32 and bfloat16
    CPU tensors with dropout (:func:`_dropout_attention`)."""
    rule = cpu_dropout.rule(dropout_p) if dropout_p > 0 else None
    if (rule is not None and q.dtype in _SEPARATE_OPS and q.device.type == "cpu"
            and cpu_dropout.usable(q)):
        return _dropout_attention(q, k, v, attn_mask, rule, is_causal, scale)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p,
                                          is_causal=is_causal, scale=scale)


def _dropout_attention(q, k, v, attn_mask, rule: tuple[int, float], is_causal: bool,
                       scale) -> torch.Tensor:
    """SDPA's arithmetic for float32 or bfloat16 ``(..., Nq, D)`` queries with dropout on the
    CPU, as separate ops: scores and softmax in float32 (as SDPA's math kernel computes
    them), the weights rounded to the queries' dtype and dropped out (attnkit's compiled
    dropout, its rule and scale), their product with the values (float32 accumulation).
    ``attn_mask``: boolean (True = attend) or additive, broadcastable to the scores;
    ``is_causal``: top-left causal (``j <= i``)."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = torch.matmul(q.float(), k.float().transpose(-2, -1)) * scale  # (..., Nq, Nk)
    if is_causal:
        Nq, Nk = scores.shape[-2:]
        attn_mask = torch.ones(Nq, Nk, dtype=torch.bool, device=q.device).tril()
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    elif attn_mask is not None:
        scores = scores + attn_mask
    threshold, keep_scale = rule  # cpu_dropout.rule of the drop probability
    weights = cpu_dropout.dropout(torch.softmax(scores, -1).to(q.dtype), threshold, keep_scale)
    return torch.matmul(weights, v)  # (..., Nq, Dv)
