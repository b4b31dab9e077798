"""Autoregressive decoding: batched greedy search and batched beam search.

Both work with any model that decodes step by step
(:class:`attnkit.decode.protocols.StepDecoder`, as :class:`attnkit.models.Transformer`
and :class:`attnkit.models.BahdanauSeq2Seq` do): ``encode(src, src_valid_lens)``,
``init_state(enc, src_valid_lens)``, ``decode_step(tokens (B, t), state) -> (logits
(B, t, V), state)`` and ``reorder_state(state, indices)``; a model without one of these
is refused before the search starts (``TypeError`` naming the missing methods). A model
whose ``decode_step`` gives log-probabilities already (``gives_log_probs = True``, as
:class:`attnkit.decode.ensemble.EnsembleDecoder` does) has them taken as they are.

Two constraints reshape a step's scores before its argmax or top-k, in greedy and beam
search alike, each off unless asked (then the search is exactly the unconstrained one):
``repetition_penalty`` (CTRL's, as CTranslate2 and Hugging Face apply it: the logit of a
token the hypothesis holds already is divided by the penalty when positive, multiplied by
it when negative; :func:`penalize_repeats`) and ``no_repeat_ngram`` (a token that would
complete an n-gram the hypothesis holds already gets ``-inf``; :func:`block_repeated_ngrams`),
both on the logits before they are normalized, as CTranslate2 applies them. A hypothesis
is the tokens generated after ``<bos>``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from .._values import check_choice, check_finite, check_nonnegative_int, check_positive_int
from .protocols import check_step_decoder

__all__ = ["DEFAULT_STOP", "NO_CONSTRAINTS", "STOP_RULES", "Constraints", "Hypothesis",
           "argmax_rows", "beam_search", "block_repeated_ngrams", "check_n_best",
           "greedy_hypotheses", "greedy_search", "length_penalty", "n_best_search",
           "n_best_unchecked", "penalize_repeats", "topk_rows"]

#: An output limit in tokens: one for the whole batch, or one per sentence (a ``(B,)``
#: integer tensor or a list of ``B`` ints), e.g. each source's own ``2·S + 10``. A
#: sentence then stops at its own limit exactly as it would in a batch of that limit.
Limits = int | list[int] | torch.Tensor


#: When a sentence's beam search stops before its output limit (``stop=`` of
#: :func:`beam_search`): ``"exact"``, once it holds K ended hypotheses and no live beam
#: can still beat the best of them under the length penalty (log-probabilities only
#: fall, so the bound is exact for ``alpha >= 0``: the search's own best is final);
#: ``"best_ended"``, once it holds K ended hypotheses and the best extension of one of
#: its steps was ``<eos>`` (CTranslate2's rule; exact for ``alpha = 0``, with a length
#: penalty a longer hypothesis might have won).
STOP_RULES = ("exact", "best_ended")
#: The rule of :func:`beam_search` unless told: on Multi30k validation (1,014 sentences, beam
#: 5, the shipped config) it decodes 13% fewer rows than ``"exact"`` and changes one output.
DEFAULT_STOP = "best_ended"


def length_penalty(length: int | torch.Tensor, alpha: float):
    """GNMT's length penalty ``((5 + length) / 6) ** alpha`` (Wu et al., 2016, eq. 14).

    Beam scores are ``log P(y | x) / length_penalty``; ``alpha = 0`` ranks by
    raw log-probability, larger ``alpha`` favours longer outputs.
    """
    return ((5.0 + length) / 6.0) ** alpha


@dataclass(frozen=True)
class Constraints:
    """What a search discourages or forbids (module docs): ``no_repeat_ngram`` ``N`` >= 0
    (0: off), ``repetition_penalty`` ``P`` > 0 (1: off).

    Raises:
        ValueError: ``N`` not a non-negative int, ``P`` not a finite number > 0 (naming it).
    """

    no_repeat_ngram: int = 0
    repetition_penalty: float = 1.0

    def __post_init__(self):
        check_nonnegative_int("no_repeat_ngram", self.no_repeat_ngram)
        check_finite("repetition_penalty", self.repetition_penalty, above=0)

    @property
    def active(self) -> bool:
        return bool(self.no_repeat_ngram) or self.repetition_penalty != 1.0

    def log_probs(self, model, logits: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """A step's log-probabilities ``(n, V)`` from its ``logits`` ``(n, V)`` under these
        constraints (none: the normalized logits), ``history`` ``(n, t)`` the tokens each
        row's hypothesis holds. Both reshape the logits before they are normalized, as
        CTranslate2 does: a token blocked leaves its probability to the others."""
        x = logits.float()
        if self.repetition_penalty != 1.0:
            x = penalize_repeats(x, history, self.repetition_penalty)
        if self.no_repeat_ngram:
            x = block_repeated_ngrams(x.clone() if x is logits else x, history,
                                      self.no_repeat_ngram)
        return _log_probs(model, x)


#: The search without constraints (the default of every search)
NO_CONSTRAINTS = Constraints()


def penalize_repeats(logits: torch.Tensor, history: torch.Tensor, penalty: float
                     ) -> torch.Tensor:
    """``logits`` ``(n, V)`` with each token of its row's ``history`` ``(n, t)`` penalized
    (CTRL, Keskar et al., 2019): divided by ``penalty`` when positive, multiplied by it
    otherwise, so ``penalty > 1`` makes a repeat less likely either way. A result past the
    dtype's range is held at its largest finite value (a tiny penalty would otherwise make
    ``inf``, which no normalization survives)."""
    seen = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, history, True)
    top = torch.finfo(logits.dtype).max
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty).clamp_(-top, top)
    return torch.where(seen, penalized, logits)


def block_repeated_ngrams(scores: torch.Tensor, history: torch.Tensor, n: int
                          ) -> torch.Tensor:
    """``scores`` ``(r, V)`` with ``-inf`` (in place) for every token that would complete an
    ``n``-gram its row's ``history`` ``(r, t)`` holds already: the tokens that followed an
    earlier occurrence of the row's last ``n - 1`` tokens (``n = 1``: every token held)."""
    t = history.shape[1]
    if t < n:
        return scores
    grams = history.unfold(1, n, 1)  # (r, t - n + 1, n)
    match = (grams[:, :, :-1] == history[:, None, t - n + 1:]).all(-1)  # (r, t - n + 1)
    rows, at = match.nonzero(as_tuple=True)
    scores[rows, grams[rows, at, -1]] = float("-inf")
    return scores


def _log_probs(model, logits: torch.Tensor) -> torch.Tensor:
    """A step's ``logits`` ``(n, V)`` as float log-probabilities: normalized, unless the
    model gives log-probabilities already (``gives_log_probs``)."""
    if getattr(model, "gives_log_probs", False):
        return logits.float()
    return torch.log_softmax(logits.float(), -1)


def _check(model, src, src_valid_lens, max_output_len) -> list[int]:
    """Check the search arguments; returns each sentence's output limit."""
    check_step_decoder(model)
    if not isinstance(src, torch.Tensor) or src.ndim != 2 or src.dtype != torch.long:
        got = (f"{tuple(src.shape)} {src.dtype}" if isinstance(src, torch.Tensor)
               else type(src).__name__)
        raise ValueError(f"src must be a (B, S) long tensor; got {got}")
    if src_valid_lens is not None and tuple(src_valid_lens.shape) != (src.shape[0],):
        raise ValueError(f"src_valid_lens must have shape ({src.shape[0]},); "
                         f"got {tuple(src_valid_lens.shape)}")
    return _per_row_limits(max_output_len, src.shape[0])


def _per_row_limits(max_output_len, batch: int) -> list[int]:
    """Each sentence's output limit from ``max_output_len``: one positive int for all
    ``batch`` sentences, or one per sentence (a ``(batch,)`` integer tensor or a list
    of ints), e.g. each source's own ``2·S + 10``."""
    if not isinstance(max_output_len, (torch.Tensor, list, tuple)):
        return [check_positive_int("max_output_len", max_output_len)] * batch
    expected = f"max_output_len must be a positive int or one int per sentence, shape ({batch},)"
    if isinstance(max_output_len, torch.Tensor):
        t = max_output_len
        if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
            raise ValueError(f"{expected}; got a {t.dtype} tensor")
        shape = tuple(t.shape)
    else:
        shape = (len(max_output_len),)
    if shape != (batch,):
        raise ValueError(f"{expected}; got shape {shape}")
    limits = max_output_len.tolist() if isinstance(max_output_len, torch.Tensor) \
        else list(max_output_len)
    for i, limit in enumerate(limits):
        check_positive_int(f"max_output_len[{i}]", limit)
    return limits


def _greedy(model, src, src_valid_lens, *, bos_id: int, eos_id: int,
            max_output_len: Limits, scored: bool, rules: Constraints = NO_CONSTRAINTS
            ) -> tuple[list[list[int]], list[float] | None]:
    """The argmax chain of each sentence up to its own output limit (``max_output_len``:
    one for all or one per sentence), as token rows that end with the first ``<eos>``
    or at the limit, and (when ``scored``) the log-probability of each chain up to
    its ``<eos>``.

    Sentences that have ended (by ``<eos>`` or at their limit) leave the batch (their
    rows are dropped from the decoder state once an eighth of the rows have ended),
    so the steps after are paid only by the sentences still going. ``rules``: the
    constraints of each step (:class:`Constraints`), whose history is kept only when on.
    """
    limits = _check(model, src, src_valid_lens, max_output_len)
    B, dev = src.shape[0], src.device
    if B == 0:
        return [], ([] if scored else None)
    state = model.init_state(model.encode(src, src_valid_lens), src_valid_lens)
    rows = torch.arange(B, device=dev)  # the sentence of each row of the state
    # per row: tokens it may still take (a limit past 2^62 steps is never reached)
    left = torch.tensor([min(n, 1 << 62) for n in limits], device=dev)
    done = torch.zeros(B, dtype=torch.bool, device=dev)  # per row: <eos> or limit reached
    tokens = torch.full((B, 1), bos_id, dtype=torch.long, device=dev)  # (n, 1)
    steps: list[tuple[torch.Tensor, torch.Tensor]] = []  # per step: (rows, tokens)
    logp = torch.zeros(B, device=dev) if scored else None  # (B,)
    history = tokens[:, :0] if rules.active else None  # (n, t) the tokens generated
    for _ in range(max(limits)):
        logits, state = model.decode_step(tokens, state)  # (n, 1, V)
        scores = logits[:, -1] if history is None else rules.log_probs(
            model, logits[:, -1], history)  # (n, V)
        nxt = argmax_rows(scores).masked_fill(done, eos_id)  # (n,)
        if logp is not None:
            step = (scores if history is not None else _log_probs(model, scores)
                    ).gather(1, nxt[:, None])[:, 0]
            logp.index_add_(0, rows, step.masked_fill(done, 0.0))
        if history is not None:
            history = torch.cat([history, nxt[:, None]], 1)
        steps.append((rows, nxt))
        left = left - 1
        done = done | (nxt == eos_id) | (left == 0)
        n_done = int(done.sum())
        if n_done == len(rows):
            break
        if n_done and 8 * n_done >= len(rows):  # compact: keep the rows still going
            keep = (~done).nonzero()[:, 0]
            state = model.reorder_state(state, keep)
            rows, nxt, done, left = rows[keep], nxt[keep], done[keep], left[keep]
            history = None if history is None else history[keep]
        tokens = nxt[:, None]
    out = torch.full((B, len(steps)), eos_id, dtype=torch.long, device=dev)
    for t, (r, toks) in enumerate(steps):
        out[r, t] = toks
    return ([row[:limit] for row, limit in zip(out.tolist(), limits, strict=True)],
            None if logp is None else logp.tolist())


@torch.no_grad()
def greedy_search(model, src: torch.Tensor, src_valid_lens: torch.Tensor | None, *,
                  bos_id: int, eos_id: int, max_output_len: Limits = 100,
                  no_repeat_ngram: int = 0, repetition_penalty: float = 1.0
                  ) -> list[list[int]]:
    """Pick the most likely token at every step, for a whole batch at once, under the
    constraints ``no_repeat_ngram`` and ``repetition_penalty`` (:class:`Constraints`).

    Returns one list of token ids per sentence, without ``<bos>`` and ``<eos>``, at
    most its output limit long (:data:`Limits`).
    """
    rows, _ = _greedy(model, src, src_valid_lens, bos_id=bos_id, eos_id=eos_id,
                      max_output_len=max_output_len, scored=False,
                      rules=Constraints(no_repeat_ngram, repetition_penalty))
    return [row[: row.index(eos_id)] if eos_id in row else row for row in rows]


@dataclass
class Hypothesis:
    tokens: list[int]
    log_prob: float
    score: float  # log_prob / length_penalty


@torch.no_grad()
def greedy_hypotheses(model, src: torch.Tensor, src_valid_lens: torch.Tensor | None, *,
                      bos_id: int, eos_id: int, max_output_len: Limits = 100,
                      alpha: float = 0.6, rules: Constraints = NO_CONSTRAINTS
                      ) -> list[Hypothesis]:
    """:func:`greedy_search` with the score of each output, as :func:`beam_search` scores
    its hypotheses: ``log P(y, <eos> | x) / length_penalty(|y| + 1, alpha)``, or
    ``log P(y | x) / length_penalty(|y|, alpha)`` for an output cut at its limit.
    One :class:`Hypothesis` per sentence; its tokens are :func:`greedy_search`'s under
    the same ``rules``, its log-probability that of the constrained steps."""
    rows, logps = _greedy(model, src, src_valid_lens, bos_id=bos_id, eos_id=eos_id,
                          max_output_len=max_output_len, scored=True, rules=rules)
    out = []
    for row, lp in zip(rows, logps, strict=True):
        ended = eos_id in row
        toks = row[: row.index(eos_id)] if ended else row
        out.append(Hypothesis(toks, lp, lp / length_penalty(len(toks) + ended, alpha)))
    return out


def check_n_best(n_best, beam_size, *, names: tuple[str, str] = ("n_best", "beam_size")
                 ) -> None:
    """``n_best`` and ``beam_size`` positive ints with ``n_best <= beam_size``; the
    errors call them by ``names`` (the command line passes its flags)."""
    n, b = names
    check_positive_int(n, n_best)
    check_positive_int(b, beam_size)
    if n_best > beam_size:
        raise ValueError(f"{n} must be <= {b} (a beam of K keeps at most K hypotheses): "
                         f"{n} {n_best} needs {b} >= {n_best}; got {n}={n_best}, "
                         f"{b}={beam_size}")


@torch.no_grad()
def n_best_search(model, src: torch.Tensor, src_valid_lens: torch.Tensor | None, *,
                  bos_id: int, eos_id: int, n_best: int, beam_size: int,
                  max_output_len: Limits = 100, alpha: float = 0.6,
                  stop: str = DEFAULT_STOP, no_repeat_ngram: int = 0,
                  repetition_penalty: float = 1.0) -> list[list[Hypothesis]]:
    """The ``n_best`` best hypotheses of each sentence, best first, by score.

    ``beam_size = 1`` is :func:`greedy_hypotheses` (then ``n_best`` is 1); a wider beam
    is :func:`beam_search`, whose finished hypotheses are distinct token sequences, so
    the first of each list is what :func:`beam_search` returns. A sentence gets fewer
    than ``n_best`` only when the search ends with fewer (a vocabulary or an output
    limit too small to hold that many), none only when it found nothing.
    ``max_output_len``: one limit for all or each sentence's own (:data:`Limits`);
    ``no_repeat_ngram``, ``repetition_penalty``: the constraints (:class:`Constraints`).

    Raises:
        ValueError: ``n_best`` or ``beam_size`` not a positive int, or
            ``n_best > beam_size`` (naming both); ``max_output_len`` neither a positive
            int nor one per sentence.
    """
    check_n_best(n_best, beam_size)
    return n_best_unchecked(model, src, src_valid_lens, bos_id=bos_id, eos_id=eos_id,
                            n_best=n_best, beam_size=beam_size,
                            max_output_len=max_output_len, alpha=alpha, stop=stop,
                            rules=Constraints(no_repeat_ngram, repetition_penalty))


@torch.no_grad()
def n_best_unchecked(model, src, src_valid_lens, *, bos_id: int, eos_id: int, n_best: int,
                     beam_size: int, max_output_len: Limits, alpha: float,
                     stop: str = DEFAULT_STOP, rules: Constraints = NO_CONSTRAINTS
                     ) -> list[list[Hypothesis]]:
    """:func:`n_best_search` of ``n_best`` and ``beam_size`` that :func:`check_n_best`
    passed already: a caller that searches batch after batch (as
    :func:`attnkit.decode.translator.translate_n_best` does) checks them once."""
    if beam_size == 1:
        return [[h] for h in greedy_hypotheses(model, src, src_valid_lens, bos_id=bos_id,
                                               eos_id=eos_id, max_output_len=max_output_len,
                                               alpha=alpha, rules=rules)]
    found = beam_search(model, src, src_valid_lens, bos_id=bos_id, eos_id=eos_id,
                        beam_size=beam_size, max_output_len=max_output_len, alpha=alpha,
                        return_all=True, stop=stop, no_repeat_ngram=rules.no_repeat_ngram,
                        repetition_penalty=rules.repetition_penalty)
    return [hyps[:n_best] for hyps in found]


@torch.no_grad()
def beam_search(model, src: torch.Tensor, src_valid_lens: torch.Tensor | None, *,
                bos_id: int, eos_id: int, beam_size: int = 4, max_output_len: Limits = 100,
                alpha: float = 0.6, return_all: bool = False, stop: str = DEFAULT_STOP,
                no_repeat_ngram: int = 0, repetition_penalty: float = 1.0):
    """Batched beam search with GNMT length penalty.

    All ``K`` beams of the sentences still searching advance together in one
    ``decode_step`` per position. Each step ranks the ``2K`` best extensions of
    a sentence's beams: an ``<eos>`` among the first ``K`` of them finishes a
    hypothesis scored by ``log P / length_penalty(len, alpha)``, and the best
    ``K`` extensions that are not ``<eos>`` become the new beams (the ``2K``
    always hold ``K`` of them: each beam has one ``<eos>``). This is the rule of
    fairseq, OpenNMT and CTranslate2: an ``<eos>`` outside the first ``K`` is
    outranked by ``K`` extensions and is dropped, as a beam ranked there would be.

    A sentence stops by the rule ``stop`` (:data:`STOP_RULES`) and its rows leave the
    decoder state; at its output limit it stops and its live beams count as hypotheses
    too (scored by their length without ``<eos>``); ``max_output_len`` is one limit for
    all or each sentence's own (:data:`Limits`). Returns the best token list per
    sentence (without ``<bos>``/``<eos>``), or with ``return_all=True`` every
    :class:`Hypothesis` per sentence, best first. The first step decodes one row per
    sentence (its beams are all ``<bos>``), the later ones ``K`` (a Transformer's state
    keeps one encoder-side row per sentence for them). Each beam is constrained by its
    own tokens (``no_repeat_ngram``, ``repetition_penalty``: :class:`Constraints`)."""
    limits = _check(model, src, src_valid_lens, max_output_len)
    check_positive_int("beam_size", beam_size)
    check_choice("stop", stop, STOP_RULES)
    rules = Constraints(no_repeat_ngram, repetition_penalty)
    B, K, dev = src.shape[0], beam_size, src.device
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    sents = list(range(B))  # the sentences still searching, in the order of the state
    best_ended = [False] * B  # of each of sents: a step's best extension was <eos>
    if B:
        state = model.init_state(model.encode(src, src_valid_lens), src_valid_lens)
    R = 1  # rows per sentence in the state and in seqs: 1 at the first step, then K
    seqs = torch.full((B, 1), bos_id, dtype=torch.long, device=dev)  # (n·R, t)
    scores = torch.zeros(B, 1, device=dev)  # (n, R)
    t = 0
    while sents:
        t += 1
        logits, state = model.decode_step(seqs[:, -1:], state)  # (n·R, 1, V)
        logp = rules.log_probs(model, logits[:, -1], seqs[:, 1:])  # (n·R, V)
        last = [limits[b] == t for b in sents]  # at its own limit: the last step
        new_scores, new_origin, new_tok, going = _advance(
            scores, logp, seqs, [finished[b] for b in sents], K, eos_id=eos_id, alpha=alpha,
            last=last, limits=[limits[b] for b in sents], stop=stop, best_ended=best_ended)
        cut = [i for i, (g, end) in enumerate(zip(going, last)) if g and end]
        if cut:  # at their limit: their live beams count, and they leave the batch
            rows, ended = _extend(seqs, new_origin, new_tok, cut, R)
            _add_live_beams([finished[sents[i]] for i in cut], ended,
                            new_scores.index_select(0, torch.tensor(cut, device=dev)), alpha)
        kept = [i for i, (g, end) in enumerate(zip(going, last)) if g and not end]
        sents, best_ended = [sents[i] for i in kept], [best_ended[i] for i in kept]
        if not sents:
            break
        rows, seqs = _extend(seqs, new_origin, new_tok, kept, R)
        scores = new_scores.index_select(0, torch.tensor(kept, device=dev))
        state = model.reorder_state(state, rows)
        R = K
    return _ranked(finished, return_all)


def _ranked(finished: list[list[Hypothesis]], return_all: bool):
    """Each sentence's hypotheses best first (all of them, or the best one's tokens)."""
    for fin in finished:
        fin.sort(key=lambda h: h.score, reverse=True)
    if return_all:
        return finished
    return [fin[0].tokens if fin else [] for fin in finished]


def _extend(seqs, origin, tok, idx: list[int], R: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The new beams of the sentences at positions ``idx`` of the batch: the rows of
    ``seqs`` (n·R, t) they come from (len(idx)·K,) and their sequences (len(idx)·K, t+1),
    from each new beam's origin beam and token (``origin``, ``tok``: (n, K)); ``R``: the
    rows per sentence in ``seqs`` (1 at the first step, then K)."""
    keep = torch.tensor(idx, device=seqs.device)  # (n',)
    rows = (keep[:, None] * R + origin.index_select(0, keep)).view(-1)  # (n'·K,)
    return rows, torch.cat([seqs.index_select(0, rows),
                            tok.index_select(0, keep).view(-1, 1)], 1)


def _advance(scores, logp, seqs, finished, K: int, *, eos_id, alpha, last, limits,
             stop: str = "exact", best_ended: list[bool] | None = None):
    """One beam step for the ``n`` sentences in the batch, each with ``R`` beams (1 at the
    first step, then ``K``).

    From the ``2K`` best extensions of each sentence's beams (scores (n, R), ``logp``
    (n·R, V), which becomes their scores), those ending in ``<eos>`` among the first
    ``K`` join the sentence's list in ``finished`` and the best ``K`` others become the
    new beams. Returns the
    new beams' (scores, origin beam, token), each (n, K), and per sentence whether
    it goes on (at its last step, ``last``, it does: its beams are then added by the
    caller); unfilled slots hold ``-inf`` scores. ``limits``: each one's output limit;
    ``stop``: the stop rule (:data:`STOP_RULES`), for which ``best_ended`` (one flag per
    sentence: a step's best extension was ``<eos>``) is updated in place.
    The ranking is tensor work; Python sees only the hypotheses that end.
    """
    n, R = scores.shape
    V = logp.shape[-1]
    cand = logp.add_(scores.view(-1, 1)).view(n, R * V)  # (n, R·V), in logp's memory
    C = min(2 * K, R * V)
    top, idx = _top(cand, C)  # (n, C), best first
    beam, tok = idx // V, idx % V
    finite = top > float("-inf")
    eos = tok == eos_id
    rank = torch.arange(C, device=top.device)
    # an <eos> among the first K ends a hypothesis; outside them it is outranked by K
    # extensions and dropped, like a beam ranked there
    ends = eos & finite & (rank < K)
    alive = ~eos & finite
    take = alive & (alive.cumsum(1) <= K)  # the first K extensions that are not <eos>
    if C < K:  # fewer candidates than beams (a tiny vocabulary): empty slots, never taken
        pad = K - C
        top = torch.cat([top, top.new_full((n, pad), float("-inf"))], 1)
        beam, tok = (torch.cat([x, x.new_zeros(n, pad)], 1) for x in (beam, tok))
        take = torch.cat([take, take.new_zeros(n, pad)], 1)
        rank = torch.arange(K, device=top.device)
    order = torch.where(take, rank, rank + K + C).argsort(1)[:, :K]  # taken first, in rank
    taken = take.gather(1, order)
    new_s = top.gather(1, order).masked_fill(~taken, float("-inf"))
    new_o = beam.gather(1, order).masked_fill(~taken, 0)
    new_t = tok.gather(1, order).masked_fill(~taken, eos_id)
    ended = ends.nonzero().tolist()  # [(sentence, rank)], by sentence then rank
    if ended:
        at = torch.tensor(ended, device=top.device)
        rows = at[:, 0] * R + beam[at[:, 0], at[:, 1]]
        toks_l = seqs.index_select(0, rows)[:, 1:].tolist()
        score_l = top[at[:, 0], at[:, 1]].tolist()
        for (b, _), toks, s in zip(ended, toks_l, score_l, strict=True):
            finished[b].append(Hypothesis(toks, s, s / length_penalty(len(toks) + 1, alpha)))
    if stop == "best_ended":
        for b, ended_first in enumerate((eos[:, 0] & finite[:, 0]).tolist()):
            best_ended[b] = best_ended[b] or ended_first
        going = [end or not (first and len(fin) >= K)
                 for end, fin, first in zip(last, finished, best_ended, strict=True)]
    else:
        best_alive = new_s.max(1).values.tolist()
        going = [end or not _sentence_done(fin, best, K, alpha=alpha, max_output_len=limit)
                 for end, fin, best, limit in zip(last, finished, best_alive, limits,
                                                  strict=True)]
    return new_s, new_o, new_t, going


@functools.lru_cache(maxsize=64)
def _block_width(width: int) -> int | None:
    """The largest divisor of ``width`` in [32, 200], or ``None``: the blocks in which
    :func:`argmax_rows` and :func:`topk_rows` reduce a row (on the CPU, a max over short
    contiguous blocks is vectorized; ``argmax`` and ``topk`` over a whole row are not)."""
    return next((w for w in range(min(200, width // 2), 31, -1) if width % w == 0), None)


def argmax_rows(x: torch.Tensor) -> torch.Tensor:
    """``x.argmax(-1)`` of a 2-D tensor, the same answer (the first of equal maxima; a NaN
    counts as the largest), found block by block: the maxima of blocks of a row first,
    then the position inside the first block that holds the row's maximum (3x faster
    on a row of 6,000 logits)."""
    n, width = x.shape
    w = _block_width(width)
    if w is None or n == 0:
        return x.argmax(-1)
    blocks = x.reshape(n, width // w, w)
    b = blocks.amax(-1).argmax(-1)  # (n,) the first block holding the row's maximum
    return b * w + blocks[torch.arange(n, device=x.device), b].argmax(-1)


def topk_rows(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x.topk(k, -1)`` of a 2-D tensor (values best first; which of equal values come
    first is open, as with ``topk``), found among the ``k`` blocks of each row with the
    largest maxima: every one of a row's ``k`` best lies in such a block (a block whose
    maximum ranks below ``k`` others holds nothing above those ``k`` maxima). Rows with a
    tie at the ``k``-th block maximum take the whole row."""
    n, width = x.shape
    w = _block_width(width)
    if w is None or n == 0 or k + 1 > width // w:
        return x.topk(k, -1)
    blocks = x.reshape(n, width // w, w)
    maxima, picked = blocks.amax(-1).topk(k + 1, -1)  # (n, k + 1)
    picked = picked[:, :k]
    cand = blocks.gather(1, picked[:, :, None].expand(n, k, w)).reshape(n, k * w)
    top, j = cand.topk(k, -1)
    idx = picked.gather(1, j // w) * w + j % w
    tied = maxima[:, k - 1] == maxima[:, k]
    if bool(tied.any()):  # another block might hold an equal value: the whole row
        rows = tied.nonzero()[:, 0]
        t, i = x.index_select(0, rows).topk(k, -1)
        top, idx = top.index_copy(0, rows, t), idx.index_copy(0, rows, i)
    return top, idx


def _top(cand: torch.Tensor, C: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``C`` best of each row of ``cand`` (n, R·V), best first, equal scores in the
    order of their index (beam, then token), as a stable sort of the whole row ranks
    them: ``topk`` leaves the order of ties open, so ties inside the ``C`` are put in
    order, and rows with a tie across the ``C``-th place are sorted whole."""
    width = cand.shape[1]
    top, idx = topk_rows(cand, min(C + 1, width))  # one more: a tie at the border shows
    if C < width:
        border = top[:, C - 1] == top[:, C]  # (n,)
        top, idx = top[:, :C], idx[:, :C]
        if bool(border.any()):
            rows = border.nonzero()[:, 0]
            s, i = cand.index_select(0, rows).sort(dim=-1, descending=True, stable=True)
            top, idx = top.index_copy(0, rows, s[:, :C]), idx.index_copy(0, rows, i[:, :C])
    if bool((top[:, 1:] == top[:, :-1]).any()):  # ties inside: by index, then by score
        i = idx.sort(dim=-1, stable=True)
        top, idx = top.gather(1, i.indices), i.values
        s = top.sort(dim=-1, descending=True, stable=True)
        top, idx = s.values, idx.gather(1, s.indices)
    return top, idx


def _sentence_done(fin, best_alive: float, K, *, alpha, max_output_len) -> bool:
    """Whether a sentence with finished hypotheses ``fin`` and best live beam score
    ``best_alive`` can stop before the last step: it has ``K`` hypotheses and no live
    beam can still beat the best of them."""
    if len(fin) < K:
        return False
    best_done = max(h.score for h in fin)
    bound = best_alive / length_penalty(max_output_len + 1, alpha) if best_alive < 0 else best_alive
    return bound <= best_done or best_alive == float("-inf")


def _add_live_beams(finished, seqs, scores, alpha) -> None:
    """Sentences still searching at the output limit: their live beams (``seqs`` (n·K, t),
    ``scores`` (n, K)) count as hypotheses too."""
    n, K = scores.shape
    seq_l, score_l = seqs.tolist(), scores.tolist()
    for b in range(n):
        for k in range(K):
            s = score_l[b][k]
            if s > float("-inf"):
                toks = seq_l[b * K + k][1:]
                finished[b].append(Hypothesis(toks, s, s / length_penalty(len(toks), alpha)))
