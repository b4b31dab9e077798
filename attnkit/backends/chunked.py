"""The ``chunked`` backend: any score, in blocks, within a memory budget.

Additive attention ``w_vᵀ tanh(W_q q + W_k k)`` has no dot-product form, and
evaluating it directly (as ``reference`` does) materializes a
``(B, Nq, Nk, h)`` tensor: 8 × 1024 × 1024 × 64 floats are 2 GiB, kept for
the backward pass too. This backend never holds more than one block of it.

Algorithm (flash-attention style, in PyTorch ops):

* The projections ``W_q q`` ``(B, Nq, h)`` and ``W_k k`` ``(B, Nk, h)`` are
  computed once, outside the blocked part (ordinary autograd).
* Forward: for each block of sequences and queries, the scores against all
  needed keys are computed key block by key block into a ``(b, q, Nk)`` slab
  (``h`` times smaller than the features; so a one-pass softmax over the slab
  is used and no online softmax is needed), normalized with the masks
  applied, and multiplied by the values. Only the output and the row
  log-sum-exp ``(B, Nq)`` are saved.
* Backward (:class:`torch.autograd.Function`): the same blocks are
  recomputed; with the saved log-sum-exp the weights of a block come back
  without the rest of the row, and ``ds = p (dp - rowsum(dO·O))`` gives the
  score gradient block by block. For additive scores the gradients of the
  projections and of ``w_v`` are formed from the recomputed ``tanh``; for
  any other score the block's scores are re-evaluated under autograd and
  differentiated with ``torch.autograd.grad`` (so user-defined scores work).
* Second-order gradients (backward with ``create_graph=True``, e.g. a
  gradient penalty): the backward recomputes the whole output in
  differentiable torch ops from the saved inputs (same masks, same dropout
  masks) and differentiates it with a graph. This materializes the scores
  (for additive ones the features) as ``reference`` does; first-order
  backward stays blocked.

Additive blocks (``additive="auto"``): on the CPU, for float32/float16/bfloat16
inputs, the scores of a block and, in backward, the projections' and ``w_v``'s
gradients come from the compiled kernel of :mod:`attnkit.kernels.cpu_additive`:
one pass over (query, key, feature) triples that never writes the features, so
it does not pay for writing and re-reading them as PyTorch ops do (BENCHMARKS.md,
"Where the time goes", has the speeds against the reference and the ops). Where
it cannot serve (no C compiler, float64, another device, ``additive="torch"``)
the blocks are PyTorch ops on ``(b, q, k, h)`` feature tensors;
:meth:`ChunkedBackend.additive_choice` and ``attnkit.explain_backend`` say which.

Memory budget: ``max_block_bytes`` (default :data:`DEFAULT_MAX_BLOCK_BYTES`)
bounds each block temporary — ``(b, q, k, h)`` float32 features for additive
scores, ``(b, q, k)`` scores for others. At most three such temporaries are
alive at once (features, their gradient, scratch), plus the ``(b, q, Nk)``
score slab, so the peak extra memory is about ``3 × max_block_bytes`` plus
``O(B·H·Nq·(Dv + h))`` for outputs and gradients; it does not grow with
``Nq × Nk × h``. A user ``mask`` is expanded to ``(B·P, Nq, Nk)`` booleans (``P``: the dims
after ``B`` folded, see ``docs/shapes.md``).

Threads: inside :func:`attnkit.runtime.pinned_threads` the blocks are shared
out to worker threads (a pool kept between calls), each running its ops on one
intra-op thread; elsewhere they run on the calling thread and torch's thread
setting is left alone. A call too small to fill the blocks of its memory budget
is cut into up to ``SPLIT_BLOCKS`` blocks of at least ``MIN_TERMS_PER_BLOCK``
terms so that the threads have work to share.

Padding: query blocks whose rows are all padding (``query_valid_lens``) or
see no key are skipped, and each block visits only the keys up to the
largest prefix length among its rows (``valid_lens`` and ``causal``, from
:meth:`AttentionCall.prefix_lengths`).

Precision: blocks are computed in float32 whatever the input dtype
(projections run in the input dtype, as ``nn.Linear`` does); the output is
returned in the dtype of the values. Under ``torch.autocast`` the inputs are
first cast to the autocast dtype. Dropout masks are drawn per block from a
seed taken from the global generator, so backward regenerates them exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._cpu import call_threads
from .._values import check_choice, check_int, check_positive_int
from ..kernels import cpu_additive
from ..scores import Additive, Score
from ..softmax import softmax_with_mask
from ._workers import in_workers as _in_workers
from ._workers import worker_count
from .base import AttentionCall, Backend, values_reason

__all__ = ["ADDITIVE_CHOICES", "DEFAULT_MAX_BLOCK_BYTES", "ChunkedBackend"]

#: ``auto`` passes additive calls with fewer (query, key, feature) terms than this to
#: ``reference``: there its few large ops beat the blocked machinery (projections, masks,
#: per-block softmax, a custom autograd function), which pays off only once the features
#: it avoids are large (BENCHMARKS.md, "Small additive calls go to `reference`", has the
#: crossover). Its memory at this size is a few (B, Nq, Nk, h) float32 tensors of 8 MB.
SMALL_ADDITIVE_TERMS = 2_000_000

#: Values of ``ChunkedBackend(additive=...)``.
ADDITIVE_CHOICES = ("auto", "compiled", "torch")

#: Default bound on one block temporary, in bytes: two such buffers fit the
#: last-level cache, and blocks stay large enough that per-op overhead is small.
DEFAULT_MAX_BLOCK_BYTES = 8 * 2**20


class ChunkedBackend(Backend):
    """Blocked attention for any score, with recomputation in backward.

    Args:
        max_block_bytes: bound on each block temporary (see the module docs).
        intra_op_threads: torch intra-op threads while the block loop runs
            inside :func:`attnkit.runtime.pinned_threads` (``None``: leave torch's
            setting; outside that block it is always left). The loop issues
            thousands of small ops; each multi-threaded op ends in a thread
            barrier, and on a CPU shared with other processes a descheduled
            thread stalls every barrier, which makes the loop many times slower
            (BENCHMARKS.md, "Figures behind choices in the code", has one).
            The default 1 avoids that, with torch's thread count in worker
            threads instead; the setting is process-wide and is restored after
            each call.
        additive: how blocks of additive scores are evaluated. ``"compiled"``:
            the fused C kernel of :mod:`attnkit.kernels.cpu_additive` (features
            never written; float32 blocks on the CPU; built on first use);
            ``"torch"``: PyTorch ops on ``(b, q, k, h)`` feature blocks;
            ``"auto"`` (default): compiled where it serves the call (CPU,
            float32 blocks, a C compiler found), else torch.
            :meth:`additive_choice` says which and why.
    """

    name = "chunked"
    handles_query_valid_lens = True

    def __init__(self, max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES,
                 intra_op_threads: int | None = 1, additive: str = "auto"):
        check_int("max_block_bytes", max_block_bytes, minimum=1024)
        check_positive_int("intra_op_threads", intra_op_threads, allow_none=True)
        check_choice("additive", additive, ADDITIVE_CHOICES)
        self.max_block_bytes = max_block_bytes
        self.intra_op_threads = intra_op_threads
        self.additive = additive

    def additive_choice(self, call: AttentionCall) -> tuple[str, str]:
        """``("compiled" | "torch", why)``: how ``call``'s additive blocks are evaluated."""
        if self.additive == "torch":
            return "torch", "additive='torch' was asked for"
        why_not = _compiled_reason(call)
        if why_not is None:
            return "compiled", cpu_additive.status().detail
        return "torch", why_not

    def auto_reason(self, call: AttentionCall) -> str | None:
        if isinstance(call.score, Additive):
            terms = (math.prod(call.batch_shape) * call.num_queries * call.num_keys *
                     call.score.num_hiddens)
            if terms < SMALL_ADDITIVE_TERMS:
                return (f"a small additive call ({terms:,} query-key-feature terms, under "
                        f"{SMALL_ADDITIVE_TERMS:,}): reference is faster there")
        return None

    def describe(self, call: AttentionCall) -> str | None:
        if not isinstance(call.score, Additive):
            return None
        way, why = self.additive_choice(call)
        return f"additive blocks by {'the compiled kernel' if way == 'compiled' else 'torch ops'}" \
            f" ({why})"

    def unsupported_reason(self, call: AttentionCall) -> str | None:
        if values_reason(call) is not None:
            return values_reason(call)
        if call.values is None:
            return "needs values (weights-only calls go to reference)"
        if call.score.needs_whole_rows:
            return (f"score '{call.score.name}' depends on absolute positions; chunked "
                    "evaluates it on blocks")
        if self.additive == "compiled" and isinstance(call.score, Additive):
            why_not = _compiled_reason(call)
            if why_not is not None:
                return f"additive='compiled' cannot serve it: {why_not}"
        return None

    def forward(self, call: AttentionCall) -> torch.Tensor:
        batch = call.batch_shape
        B, P = batch[0], math.prod(batch[1:])  # P: the dims after B (heads…) folded
        q, k, v = call.queries, call.keys, call.values
        device_type = q.device.type
        if torch.is_autocast_enabled(device_type):
            dtype = torch.get_autocast_dtype(device_type)
            q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
        score = call.score
        if isinstance(score, Additive):
            q, k = score.project(q, k)  # (*, Nq, h), (*, Nk, h)
            compiled = self.additive_choice(call)[0] == "compiled"
            kernel = _CompiledAdditiveKernel() if compiled else _AdditiveKernel()
            params = [score.w_v.weight]  # (1, h)
        else:
            kernel = _ScoreKernel(score)
            params = [p for p in score.parameters() if p.requires_grad]
        q = _fold_batch(q, batch, B * P)  # (BP, Nq, Dq|h)
        k = _fold_batch(k, batch, B * P)  # (BP, Nk, Dk|h)
        v = _fold_batch(v, batch, B * P)  # (BP, Nk, Dv)
        e = call.prefix_lengths(fold=True)  # (BP, Nq)
        mask = None
        if call.mask is not None:
            mask = call.mask.expand(*batch, call.num_queries, call.num_keys)
            mask = mask.reshape(B * P, call.num_queries, call.num_keys)  # (BP, Nq, Nk)
        pair_bytes = kernel.bytes_per_pair(q)
        blocks = _blocks(e, pair_bytes, self.max_block_bytes, _min_blocks(e, q.shape[-1]))
        seed = int(torch.randint(0, 2**62, (1,)).item()) if call.dropout_p > 0 else 0
        # with one intra-op thread per op, torch's thread setting goes to block workers
        workers = worker_count(len(blocks)) if self.intra_op_threads == 1 else 1
        plan = _Plan(kernel, e, mask, blocks, call.dropout_p, seed, self.intra_op_threads,
                     workers)
        with torch.autocast(device_type, enabled=False):
            out = _ChunkedAttention.apply(plan, q, k, v, *params)  # (BP, Nq, Dv)
        return out.reshape(*batch, call.num_queries, v.shape[-1])


def _compiled_reason(call: AttentionCall) -> str | None:
    """Why the compiled additive kernel cannot evaluate ``call``'s blocks (``None``: it can)."""
    if call.queries.device.type != "cpu":
        return f"the compiled kernel runs on the CPU; the inputs are on {call.queries.device}"
    dtype = call.queries.dtype
    if torch.is_autocast_enabled("cpu"):
        dtype = torch.get_autocast_dtype("cpu")
    if dtype == torch.float64:
        return "float64 inputs: blocks are evaluated in float64, the compiled kernel is float32"
    built = cpu_additive.status()
    return None if built.lib is not None else built.detail


def _fold_batch(x: torch.Tensor, batch: tuple[int, ...], n: int) -> torch.Tensor:
    """``x`` ``(*, N, D)`` broadcast to the call's batch dims ``batch`` and those folded
    into one dim of ``n = B·P`` rows."""
    return x.expand(*batch, *x.shape[-2:]).reshape(n, *x.shape[-2:])  # (BP, N, D)


def _acc_dtype(x: torch.Tensor) -> torch.dtype:
    """float32 for half/bfloat16/float32 inputs, float64 for float64."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


# ------------------------------------------------------------------- planning


@dataclass
class _Block:
    """Sequences ``[b0, b1)``, queries ``[q0, q1)``, keys ``[0, K)`` in chunks of ``bk``."""

    b0: int
    b1: int
    q0: int
    q1: int
    K: int
    bk: int

    def key_chunks(self):
        for k0 in range(0, self.K, self.bk):
            yield k0, min(k0 + self.bk, self.K)


@dataclass
class _Plan:
    kernel: object
    e: torch.Tensor  # (BP, Nq) prefix lengths: row i sees keys [0, e)
    mask: torch.Tensor | None  # (BP, Nq, Nk) user mask, True = may attend
    blocks: list[_Block]
    dropout_p: float
    seed: int
    threads: int | None = None  # intra-op threads for the block loop
    workers: int = 1  # threads that share out the blocks

    def block_mask(self, blk: _Block, k0: int, k1: int) -> torch.Tensor:
        """``(b, q, k1 - k0)`` boolean, True = may attend."""
        e = self.e[blk.b0:blk.b1, blk.q0:blk.q1, None]  # (b, q, 1)
        m = torch.arange(k0, k1, device=e.device) < e  # (b, q, k)
        if self.mask is not None:
            m = m & self.mask[blk.b0:blk.b1, blk.q0:blk.q1, k0:k1]
        return m

    def keep(self, blk: _Block, index: int, k0: int, k1: int, device,
             dtype=torch.float32) -> torch.Tensor:
        """Dropout keep-mask scaled by ``1/(1-p)`` for one chunk; same in forward and backward."""
        gen = torch.Generator(device=device)
        gen.manual_seed((self.seed + 1_000_003 * index + k0) % 2**63)
        shape = (blk.b1 - blk.b0, blk.q1 - blk.q0, k1 - k0)
        u = torch.rand(shape, generator=gen, device=device)
        return (u >= self.dropout_p).to(dtype) / (1.0 - self.dropout_p)


#: Smallest share of work worth a block of its own when a call is split for the worker
#: threads, in (query, key, feature) terms: enough of one thread's work with the compiled
#: additive kernel that handing blocks to threads stays a small part of it (BENCHMARKS.md,
#: "Figures behind choices in the code", has the time it stood for).
MIN_TERMS_PER_BLOCK = 2_000_000
#: At most this many blocks are made for the threads' sake (the memory budget may make
#: more). Fixed, not the thread count, so that the tiling, and with it the dropout masks
#: drawn per block, is the same whatever the number of threads.
SPLIT_BLOCKS = 8


def _min_blocks(e: torch.Tensor, width: int) -> int:
    """Blocks wanted so that worker threads can share the call: :data:`SPLIT_BLOCKS`, or
    fewer where the work cannot fill them (:data:`MIN_TERMS_PER_BLOCK` each)."""
    if e.numel() == 0:
        return 1
    terms = e.shape[0] * e.shape[1] * int(e.max()) * width  # an upper bound on the work
    return max(1, min(SPLIT_BLOCKS, terms // MIN_TERMS_PER_BLOCK))


def _blocks(e: torch.Tensor, pair_bytes: int, budget: int,
            min_blocks: int = 1) -> list[_Block]:
    """Tile ``(BP, Nq)`` so that one ``(b, q, k)`` block stays within ``budget`` bytes,
    in at least ``min_blocks`` tiles where the sizes allow (smaller tiles for the
    worker threads: sequences split first, then queries)."""
    BP, Nq = e.shape
    kmax = int(e.max()) if e.numel() else 0
    if kmax == 0:
        return []
    bk = max(1, min(kmax, budget // pair_bytes))
    bq = max(1, min(Nq, budget // (pair_bytes * bk)))
    bb = max(1, min(BP, budget // (pair_bytes * bk * bq)))
    while -(-BP // bb) * -(-Nq // bq) < min_blocks and (bb > 1 or bq > 1):
        if bb > 1:
            bb = -(-bb // 2)
        else:
            bq = -(-bq // 2)
    nb, nq = -(-BP // bb), -(-Nq // bq)
    need = torch.nn.functional.pad(e, (0, nq * bq - Nq, 0, nb * bb - BP))  # (nb·bb, nq·bq)
    need = need.reshape(nb, bb, nq, bq).amax((1, 3)).tolist()  # (nb, nq) keys per block
    out = []
    for i in range(nb):
        for j in range(nq):
            if need[i][j] > 0:
                out.append(_Block(i * bb, min(BP, (i + 1) * bb), j * bq, min(Nq, (j + 1) * bq),
                                  need[i][j], bk))
    return out


# -------------------------------------------------------------------- kernels


def _matvec(f: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``f @ w`` for ``f`` ``(..., h)`` as one matrix-vector product (not a batched one)."""
    return (f.reshape(-1, f.shape[-1]) @ w).reshape(f.shape[:-1])  # (...)


class _Kernel:
    """What the block loop asks of a score kernel. :meth:`prepare` runs once per pass and
    gives the state the workers share (read only); :meth:`for_worker` adds what one
    worker writes into (default: nothing); :meth:`write_scores` fills a block of scores."""

    def for_worker(self, state, plan):
        return state

    def write_scores(self, state, blk, k0, k1, out: torch.Tensor) -> None:
        out.copy_(self.scores(state, blk, k0, k1))


def _additive_scores(q, k, params) -> torch.Tensor:
    """``w · tanh(qp_i + kp_j)`` over all pairs, in differentiable ops: ``(BP, Nq, Nk)``."""
    return _matvec(torch.tanh(q[:, :, None, :] + k[:, None, :, :]),
                   params[0].to(q.dtype).reshape(-1))


class _AdditiveKernel(_Kernel):
    """``s = w · tanh(qp_i + kp_j)`` on projected queries/keys ``(BP, N, h)``.

    ``tanh`` is evaluated as ``tanh(x) = 2σ(2x) − 1`` (``σ`` the logistic
    sigmoid, cheaper than ``tanh`` on the CPU), so a block is
    ``σ = sigmoid(2qp_i + 2kp_j)`` (the factor 2 folded into the projections)
    and ``s = 2 σ·w − Σw``; the derivative ``1 − tanh² = 4σ(1 − σ)``.
    """

    full_scores = staticmethod(_additive_scores)

    def bytes_per_pair(self, q: torch.Tensor) -> int:
        return 4 * q.shape[-1]

    def prepare(self, q, k, params, plan):
        dt = _acc_dtype(q)
        w = params[0].to(dt).reshape(-1)  # (h,)
        return 2 * q.to(dt), 2 * k.to(dt), w, w.sum(), None

    def for_worker(self, state, plan):
        """The shared state with this worker's two reusable block buffers (fresh large
        allocations cost page faults)."""
        q2 = state[0]
        size = max((b.b1 - b.b0) * (b.q1 - b.q0) * min(b.bk, b.K) for b in plan.blocks) \
            if plan.blocks else 0
        bufs = [q2.new_empty(size * q2.shape[-1]) for _ in range(2)]
        return (*state[:4], bufs)

    def features(self, state, blk, k0, k1):
        q2, k2, bufs = state[0], state[1], state[4]
        shape = (blk.b1 - blk.b0, blk.q1 - blk.q0, k1 - k0, q2.shape[-1])
        f = bufs[0][:math.prod(shape)].view(shape)
        torch.add(q2[blk.b0:blk.b1, blk.q0:blk.q1, None, :], k2[blk.b0:blk.b1, None, k0:k1, :],
                  out=f)
        return f.sigmoid_()  # (b, q, k, h) = σ(2(qp + kp))

    def scores(self, state, blk, k0, k1) -> torch.Tensor:
        return self.scores_and_saved(state, blk, k0, k1)[0]

    def scores_and_saved(self, state, blk, k0, k1):
        sig = self.features(state, blk, k0, k1)  # (b, q, k, h)
        return _matvec(sig, state[2]).mul_(2).sub_(state[3]), sig  # (b, q, k)

    def accumulate(self, state, saved, ds, blk, k0, k1, grads):
        """Add the gradients of ``s`` (given ``ds``) into ``grads = [dqp, dkp, dw]``."""
        sig = saved  # (b, q, k, h)
        w, bufs = state[2], state[4]
        h = sig.shape[-1]
        # dw = Σ ds·tanh = 2 Σ ds·σ − Σ ds
        grads[2] += (sig.reshape(-1, h).T @ ds.reshape(-1)).mul_(2).sub_(ds.sum())  # (h,)
        dt = bufs[1][:sig.numel()].view(sig.shape)
        torch.mul(sig, ds.unsqueeze(-1), out=dt)  # ds·σ
        dt.addcmul_(dt, sig, value=-1.0)  # ds·σ(1 − σ) = ds·(1 − tanh²)/4: (b, q, k, h)
        w4 = 4 * w
        grads[0][blk.b0:blk.b1, blk.q0:blk.q1] += dt.sum(2) * w4  # (b, q, h)
        grads[1][blk.b0:blk.b1, k0:k1] += dt.sum(1) * w4  # (b, k, h)

    def finish(self, grads, q, k, params):
        dw = grads[2].reshape(params[0].shape).to(params[0].dtype)
        return grads[0].to(q.dtype), grads[1].to(k.dtype), [dw]


class _CompiledAdditiveKernel(_Kernel):
    """``s = w · tanh(qp_i + kp_j)`` by the fused C kernel: no ``(b, q, k, h)`` features.

    State: projected queries ``(BP, Nq, h)``, keys transposed ``(BP, h, Nk)`` (the
    kernel's inner loop runs over contiguous keys), ``w`` ``(h,)``, all float32; the
    key gradient is accumulated transposed too and turned back in :meth:`finish`.
    """

    full_scores = staticmethod(_additive_scores)

    def bytes_per_pair(self, q: torch.Tensor) -> int:
        return 4 * q.shape[-1]  # the torch path's tiling: blocks of the same size

    def prepare(self, q, k, params, plan):
        w = params[0].to(torch.float32).reshape(-1).contiguous()  # (h,)
        return (q.to(torch.float32).contiguous(),
                k.to(torch.float32).transpose(1, 2).contiguous(), w)  # (BP, h, Nk)

    def write_scores(self, state, blk, k0, k1, out: torch.Tensor) -> None:
        q, kt, w = state
        cpu_additive.additive_scores(q[blk.b0:blk.b1, blk.q0:blk.q1], kt[blk.b0:blk.b1, :, k0:k1],
                                     w, out)  # (b, q, k)

    def scores_and_saved(self, state, blk, k0, k1):
        out = state[0].new_empty(blk.b1 - blk.b0, blk.q1 - blk.q0, k1 - k0)  # (b, q, k)
        self.write_scores(state, blk, k0, k1, out)
        return out, None

    def accumulate(self, state, saved, ds, blk, k0, k1, grads):
        q, kt, w = state
        rows = slice(blk.b0, blk.b1), slice(blk.q0, blk.q1)
        keys = slice(blk.b0, blk.b1), slice(None), slice(k0, k1)
        cpu_additive.additive_grads(q[rows], kt[keys], w, ds.contiguous(), grads[0][rows],
                                    grads[1][keys], grads[2])

    def finish(self, grads, q, k, params):
        dw = grads[2].reshape(params[0].shape).to(params[0].dtype)
        return grads[0].to(q.dtype), grads[1].transpose(1, 2).to(k.dtype), [dw]


class _ScoreKernel(_Kernel):
    """Any :class:`Score`, evaluated on blocks; backward through autograd per block."""

    def __init__(self, score: Score):
        self.score = score

    def bytes_per_pair(self, q: torch.Tensor) -> int:
        return 16  # scores, weights and their gradients, float32

    def full_scores(self, q, k, params) -> torch.Tensor:
        """All ``(BP, Nq, Nk)`` scores in differentiable ops (the parameters are the
        score's own, which ``self.score`` uses)."""
        return self.score(q, k).to(q.dtype)

    def prepare(self, q, k, params, plan):
        dt = _acc_dtype(q)
        return q.to(dt), k.to(dt), params

    def scores(self, state, blk, k0, k1) -> torch.Tensor:
        q, k, _ = state
        s = self.score(q[blk.b0:blk.b1, blk.q0:blk.q1], k[blk.b0:blk.b1, k0:k1])
        return s.to(q.dtype)

    def scores_and_saved(self, state, blk, k0, k1):
        q, k, _ = state
        with torch.enable_grad():
            qb = q[blk.b0:blk.b1, blk.q0:blk.q1].detach().requires_grad_()
            kb = k[blk.b0:blk.b1, k0:k1].detach().requires_grad_()
            s = self.score(qb, kb).to(q.dtype)  # (b, q, k)
        return s.detach(), (s, qb, kb)

    def accumulate(self, state, saved, ds, blk, k0, k1, grads):
        s, qb, kb = saved
        params = state[2]
        got = torch.autograd.grad(s, [qb, kb, *params], ds, allow_unused=True)
        grads[0][blk.b0:blk.b1, blk.q0:blk.q1] += got[0]
        grads[1][blk.b0:blk.b1, k0:k1] += got[1]
        for acc, g in zip(grads[2:], got[2:]):
            if g is not None:
                acc += g.to(acc.dtype)

    def finish(self, grads, q, k, params):
        return (grads[0].to(q.dtype), grads[1].to(k.dtype),
                [g.to(p.dtype) for g, p in zip(grads[2:], params)])


# ------------------------------------------------------------ autograd function


def _split(blocks: list[_Block], n: int) -> list[list[tuple[int, _Block]]]:
    """``(index, block)`` pairs in ``n`` contiguous runs of about equal work."""
    work = [(b.b1 - b.b0) * (b.q1 - b.q0) * b.K for b in blocks]
    total, runs, acc = sum(work), [[] for _ in range(n)], 0
    for i, (blk, w) in enumerate(zip(blocks, work)):
        runs[min(n - 1, acc * n // max(total, 1))].append((i, blk))
        acc += w
    return [r for r in runs if r]


class _ChunkedAttention(torch.autograd.Function):
    """``out = softmax(mask(s(q, k))) v`` in blocks; backward recomputes the blocks."""

    @staticmethod
    def forward(ctx, plan: _Plan, q, k, v, *params):
        with call_threads(plan.threads):
            return _ChunkedAttention._forward(ctx, plan, q, k, v, *params)

    @staticmethod
    def backward(ctx, grad_out):
        if torch.is_grad_enabled():  # create_graph=True: the gradients need a graph
            return _differentiable_backward(ctx, grad_out)
        with call_threads(ctx.plan.threads):
            return _ChunkedAttention._backward(ctx, grad_out)

    @staticmethod
    def _forward(ctx, plan: _Plan, q, k, v, *params):
        v32 = v.to(_acc_dtype(v))
        BP, Nq, Dv = v.shape[0], q.shape[1], v.shape[-1]
        out = v32.new_zeros(BP, Nq, Dv)  # rows never visited stay zero
        lse = v32.new_full((BP, Nq), float("inf"))  # +inf: weight 0 in backward

        shared = plan.kernel.prepare(q, k, params, plan)

        def job(run):  # the runs write disjoint rows of out and lse
            state = plan.kernel.for_worker(shared, plan)  # own block buffers
            for index, blk in run:
                _forward_block(plan, state, v32, out, lse, index, blk)

        _in_workers(_split(plan.blocks, plan.workers), job)
        ctx.plan = plan
        ctx.save_for_backward(q, k, v, out, lse, *params)
        return out.to(v.dtype)

    @staticmethod
    def _backward(ctx, grad_out):
        q, k, v, out, lse, *params = ctx.saved_tensors
        plan = ctx.plan
        acc = _acc_dtype(v)
        v32, dout = v.to(acc), grad_out.to(acc)  # (BP, Nk, Dv), (BP, Nq, Dv)
        delta = (dout * out).sum(-1)  # (BP, Nq) = rowsum(p · dp)

        def zeros(state):
            grads = [torch.zeros_like(state[0]), torch.zeros_like(state[1])]
            grads += [torch.zeros(p.shape, dtype=acc, device=p.device) for p in params]
            if isinstance(plan.kernel, (_AdditiveKernel, _CompiledAdditiveKernel)):
                grads[2] = grads[2].reshape(-1)  # (h,)
            return grads, torch.zeros_like(v32)

        shared = plan.kernel.prepare(q, k, params, plan)

        def job(run):  # key-side gradients add up across runs: each run has its own
            state = plan.kernel.for_worker(shared, plan)
            grads, dv = zeros(state)
            with torch.autocast(q.device.type, enabled=False):
                for index, blk in run:
                    _backward_block(plan, state, v32, dout, lse, delta, index, blk, grads, dv)
            return grads, dv

        parts = _in_workers(_split(plan.blocks, plan.workers), job)
        if not parts:  # nothing attends: every gradient is zero
            parts = [zeros(shared)]
        grads, dv = parts[0]
        for more, dv_more in parts[1:]:  # in a fixed order: the same sums every run
            grads = [g.add_(m) for g, m in zip(grads, more)]
            dv.add_(dv_more)
        dq, dk, dparams = plan.kernel.finish(grads, q, k, params)
        return (None, dq, dk, dv.to(v.dtype), *dparams)


def _differentiable_backward(ctx, grad_out):
    """The gradients of :class:`_ChunkedAttention` as a graph (``create_graph=True``): the
    whole output recomputed from the saved inputs in differentiable torch ops, with the
    same masks and dropout masks as the blocks, and differentiated by autograd. It
    materializes ``(BP, Nq, Nk)`` (for additive scores ``(BP, Nq, Nk, h)``), like the
    ``reference`` backend, which second-order gradients need anyway."""
    q, k, v, _, _, *params = ctx.saved_tensors
    plan = ctx.plan
    acc = _acc_dtype(v)
    BP, Nq, Nk = q.shape[0], q.shape[1], k.shape[1]
    allowed = torch.arange(Nk, device=q.device) < plan.e[..., None]  # (BP, Nq, Nk)
    if plan.mask is not None:
        allowed = allowed & plan.mask
    scores = plan.kernel.full_scores(q.to(acc), k.to(acc), params)  # (BP, Nq, Nk)
    p = softmax_with_mask(scores, allowed)
    if plan.dropout_p > 0:
        keep = p.new_zeros(BP, Nq, Nk)  # keys no block visits have weight 0 anyway
        for index, blk in enumerate(plan.blocks):
            for k0, k1 in blk.key_chunks():
                keep[blk.b0:blk.b1, blk.q0:blk.q1, k0:k1] = plan.keep(
                    blk, index, k0, k1, p.device, p.dtype)
        p = p * keep
    out = p @ v.to(acc)  # (BP, Nq, Dv)
    inputs = [q, k, v, *params]
    wanted = [i for i, t in enumerate(inputs) if ctx.needs_input_grad[i + 1]]
    got = torch.autograd.grad(out, [inputs[i] for i in wanted], grad_out.to(acc),
                              create_graph=True, allow_unused=True)
    grads = [None] * len(inputs)
    for i, g in zip(wanted, got):
        grads[i] = torch.zeros_like(inputs[i]) if g is None else g.to(inputs[i].dtype)
    return (None, *grads)


def _forward_block(plan, state, v32, out, lse, index: int, blk: _Block) -> None:
    """One block's rows of ``out`` and ``lse``: scores, masked softmax, values."""
    s = v32.new_empty(blk.b1 - blk.b0, blk.q1 - blk.q0, blk.K)  # (b, q, K)
    for k0, k1 in blk.key_chunks():
        plan.kernel.write_scores(state, blk, k0, k1, s[:, :, k0:k1])
    m = plan.block_mask(blk, 0, blk.K)  # (b, q, K)
    s.masked_fill_(~m, float("-inf"))
    mx = s.amax(-1, keepdim=True)  # (b, q, 1)
    # a row has nothing to attend to when every key is masked or scored -inf
    row_ok = mx != float("-inf")  # (b, q, 1)
    mx = torch.where(row_ok, mx, 0.0)
    p = s.sub_(mx).exp_()  # (b, q, K), 0 where masked
    total = p.sum(-1, keepdim=True)
    p.div_(torch.where(row_ok, total, 1.0))
    lse[blk.b0:blk.b1, blk.q0:blk.q1] = torch.where(
        row_ok, mx + total.log(), float("inf")).squeeze(-1)
    if plan.dropout_p > 0:
        for k0, k1 in blk.key_chunks():
            p[:, :, k0:k1] *= plan.keep(blk, index, k0, k1, p.device, p.dtype)
    out[blk.b0:blk.b1, blk.q0:blk.q1] = p @ v32[blk.b0:blk.b1, :blk.K]  # (b, q, Dv)


def _backward_block(plan, state, v32, dout, lse, delta, index: int, blk: _Block, grads,
                    dv) -> None:
    """One block's contribution to ``grads`` (queries, keys, score parameters) and ``dv``."""
    rows = slice(blk.b0, blk.b1), slice(blk.q0, blk.q1)
    do = dout[rows]  # (b, q, Dv)
    for k0, k1 in blk.key_chunks():
        s, saved = plan.kernel.scores_and_saved(state, blk, k0, k1)  # (b, q, k)
        m = plan.block_mask(blk, k0, k1)
        p = torch.where(m, (s - lse[rows].unsqueeze(-1)).exp(), 0.0)  # (b, q, k)
        vk = v32[blk.b0:blk.b1, k0:k1]  # (b, k, Dv)
        dp = do @ vk.transpose(1, 2)  # (b, q, k)
        if plan.dropout_p > 0:
            keep = plan.keep(blk, index, k0, k1, p.device, p.dtype)
            dv[blk.b0:blk.b1, k0:k1] += (p * keep).transpose(1, 2) @ do
            dp = dp * keep
        else:
            dv[blk.b0:blk.b1, k0:k1] += p.transpose(1, 2) @ do  # (b, k, Dv)
        ds = p * (dp - delta[rows].unsqueeze(-1))  # (b, q, k)
        plan.kernel.accumulate(state, saved, ds, blk, k0, k1, grads)
