"""Autoregressive decoding: batched greedy search and batched beam search.

Both work with any model that has the step interface of
:class:`attnkit.models.Transformer` and :class:`attnkit.models.BahdanauSeq2Seq`:
``encode(src, src_valid_lens)``, ``init_state(enc, src_valid_lens)``,
``decode_step(tokens (B, t), state) -> (logits (B, t, V), state)`` and
``reorder_state(state, indices)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._values import check_positive_int

__all__ = ["Hypothesis", "beam_search", "greedy_search", "length_penalty"]


def length_penalty(length: int | torch.Tensor, alpha: float):
    """GNMT's length penalty ``((5 + length) / 6) ** alpha`` (Wu et al., 2016, eq. 14).

    Beam scores are ``log P(y | x) / length_penalty``; ``alpha = 0`` ranks by
    raw log-probability, larger ``alpha`` favours longer outputs.
    """
    return ((5.0 + length) / 6.0) ** alpha


def _check(src, src_valid_lens, max_output_len):
    if not isinstance(src, torch.Tensor) or src.ndim != 2 or src.dtype != torch.long:
        got = (f"{tuple(src.shape)} {src.dtype}" if isinstance(src, torch.Tensor)
               else type(src).__name__)
        raise ValueError(f"src must be a (B, S) long tensor; got {got}")
    if src_valid_lens is not None and tuple(src_valid_lens.shape) != (src.shape[0],):
        raise ValueError(f"src_valid_lens must have shape ({src.shape[0]},); "
                         f"got {tuple(src_valid_lens.shape)}")
    check_positive_int("max_output_len", max_output_len)


@torch.no_grad()
def greedy_search(model, src: torch.Tensor, src_valid_lens: torch.Tensor | None, *,
                  bos_id: int, eos_id: int, max_output_len: int = 100) -> list[list[int]]:
    """Pick the most likely token at every step, for a whole batch at once.

    Returns one list of token ids per sentence, without ``<bos>`` and ``<eos>``.
    """
    _check(src, src_valid_lens, max_output_len)
    B = src.shape[0]
    state = model.init_state(model.encode(src, src_valid_lens), src_valid_lens)
    tokens = torch.full((B, 1), bos_id, dtype=torch.long, device=src.device)  # (B, 1)
    out = torch.empty((B, 0), dtype=torch.long, device=src.device)
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    for _ in range(max_output_len):
        logits, state = model.decode_step(tokens, state)  # (B, 1, V)
        tokens = logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
        tokens = tokens.masked_fill(done[:, None], eos_id)
        out = torch.cat([out, tokens], 1)
        done |= tokens[:, 0] == eos_id
        if bool(done.all()):
            break
    result = []
    for row in out.tolist():
        result.append(row[: row.index(eos_id)] if eos_id in row else row)
    return result


@dataclass
class Hypothesis:
    tokens: list[int]
    log_prob: float
    score: float  # log_prob / length_penalty


@torch.no_grad()
def beam_search(model, src: torch.Tensor, src_valid_lens: torch.Tensor | None, *,
                bos_id: int, eos_id: int, beam_size: int = 4, max_output_len: int = 100,
                alpha: float = 0.6, return_all: bool = False):
    """Batched beam search with GNMT length penalty.

    All ``B × K`` beams advance together in one ``decode_step`` per position.
    A beam that emits ``<eos>`` becomes a finished hypothesis scored by
    ``log P / length_penalty(len, alpha)``; a sentence stops when it has
    ``K`` finished hypotheses and no live beam can still beat the best of them
    (log-probabilities only fall, so the bound is exact for ``alpha >= 0``),
    or at ``max_output_len``. Returns the best token list per sentence (without
    ``<bos>``/``<eos>``), or with ``return_all=True`` every finished
    :class:`Hypothesis` per sentence, best first.
    """
    _check(src, src_valid_lens, max_output_len)
    check_positive_int("beam_size", beam_size)
    B, K, dev = src.shape[0], beam_size, src.device
    state = model.init_state(model.encode(src, src_valid_lens), src_valid_lens)
    expand = torch.arange(B, device=dev).repeat_interleave(K)  # (B·K,)
    state = model.reorder_state(state, expand)
    seqs = torch.full((B * K, 1), bos_id, dtype=torch.long, device=dev)  # (B·K, t)
    scores = torch.zeros(B, K, device=dev)
    scores[:, 1:] = float("-inf")  # all beams start identical: keep one
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    active = torch.ones(B, dtype=torch.bool, device=dev)
    for t in range(1, max_output_len + 1):
        logits, state = model.decode_step(seqs[:, -1:], state)  # (B·K, 1, V)
        logp = torch.log_softmax(logits[:, -1].float(), -1)  # (B·K, V)
        new_scores, new_origin, new_tok = _advance(
            scores, logp, seqs, finished, active, eos_id=eos_id, alpha=alpha,
            last_step=t == max_output_len, max_output_len=max_output_len)
        if not bool(active.any()):
            break
        rows = (torch.arange(B, device=dev)[:, None] * K + new_origin).view(-1)  # (B·K,)
        state = model.reorder_state(state, rows)
        seqs = torch.cat([seqs.index_select(0, rows), new_tok.view(-1, 1)], 1)
        scores = new_scores.masked_fill(~active[:, None], float("-inf"))
    _add_live_beams(finished, active, seqs, scores, alpha)
    for fin in finished:
        fin.sort(key=lambda h: h.score, reverse=True)
    if return_all:
        return finished
    return [fin[0].tokens if fin else [] for fin in finished]


def _advance(scores, logp, seqs, finished, active, *, eos_id, alpha, last_step, max_output_len):
    """One beam step for every active sentence.

    From the ``2K`` best extensions of each sentence's beams (scores (B, K), ``logp``
    (B·K, V)), those ending in ``<eos>`` join ``finished`` and the best ``K`` others
    become the new beams; a sentence that is done is marked off in ``active`` (in
    place). Returns the new beams' (scores, origin beam, token), each (B, K); the
    slots of inactive sentences and unfilled slots hold ``-inf`` scores.
    """
    B, K = scores.shape
    V, dev = logp.shape[-1], scores.device
    cand = (scores.view(-1, 1) + logp).view(B, K * V)  # (B, K·V)
    top, idx = cand.topk(min(2 * K, K * V), dim=-1)  # (B, 2K)
    beam_of, tok = idx // V, idx % V
    new_scores = torch.full((B, K), float("-inf"), device=dev)
    new_origin = torch.zeros(B, K, dtype=torch.long, device=dev)
    new_tok = torch.full((B, K), eos_id, dtype=torch.long, device=dev)
    top_l, beam_l, tok_l = top.tolist(), beam_of.tolist(), tok.tolist()
    seq_l = None
    for b in range(B):
        if not bool(active[b]):
            continue
        k = 0
        for s, beam, token in zip(top_l[b], beam_l[b], tok_l[b]):
            if s == float("-inf"):
                break
            if token == eos_id:
                if seq_l is None:
                    seq_l = seqs.tolist()
                toks = seq_l[b * K + beam][1:]
                finished[b].append(Hypothesis(toks, s, s / length_penalty(len(toks) + 1,
                                                                          alpha)))
                continue
            if k < K:
                new_scores[b, k], new_origin[b, k], new_tok[b, k] = s, beam, token
                k += 1
        if _sentence_done(finished[b], new_scores[b], K, alpha=alpha, last_step=last_step,
                          max_output_len=max_output_len):
            active[b] = False
    return new_scores, new_origin, new_tok


def _sentence_done(fin, alive_scores, K, *, alpha, last_step, max_output_len) -> bool:
    """Whether a sentence with finished hypotheses ``fin`` and live beam scores
    ``alive_scores`` (K,) can stop: it has ``K`` hypotheses and no live beam can
    still beat the best of them, or this was the last step."""
    if len(fin) < K:
        return False
    best_done = max(h.score for h in fin)
    best_alive = float(alive_scores.max())
    bound = best_alive / length_penalty(max_output_len + 1, alpha) if best_alive < 0 else best_alive
    return last_step or bound <= best_done or best_alive == float("-inf")


def _add_live_beams(finished, active, seqs, scores, alpha) -> None:
    """Sentences that ran out of length: their live beams count as hypotheses."""
    B, K = scores.shape
    seq_l = seqs.tolist()
    for b in range(B):
        if finished[b] and not bool(active[b]):
            continue
        for k in range(K):
            s = float(scores[b, k])
            if s > float("-inf"):
                toks = seq_l[b * K + k][1:]
                finished[b].append(Hypothesis(toks, s, s / length_penalty(len(toks), alpha)))
