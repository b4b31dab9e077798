"""The search's constraints: ``no_repeat_ngram`` (no output holds an n-gram twice) and
``repetition_penalty`` (CTRL's, on the logits of tokens held already). Oracles: hand
walks of a Markov 'model' whose every step's scores are known, and an untrained model
that repeats itself without them."""

import json
import math

import pytest
import torch

from attnkit.decode.search import (
    Constraints,
    beam_search,
    block_repeated_ngrams,
    greedy_hypotheses,
    greedy_search,
    penalize_repeats,
)
from attnkit.decode.translator import load_translator
from attnkit.models.build import build_model

from .._ensemble import GOLDEN
from .test_search import BOS, EOS, MarkovModel


def test_the_penalty_divides_positive_and_multiplies_negative_logits_of_held_tokens():
    logits = torch.tensor([[2.0, -1.0, 0.5, -3.0, 0.0, 4.0],
                           [2.0, -1.0, 0.5, -3.0, 0.0, 4.0]])
    history = torch.tensor([[0, 1, 1, 4], [5, 5, 3, 3]])  # repeats count once
    got = penalize_repeats(logits, history, 2.0)
    assert got.tolist() == [[1.0, -2.0, 0.5, -3.0, 0.0, 4.0],
                            [2.0, -1.0, 0.5, -6.0, 0.0, 2.0]]
    assert penalize_repeats(logits, history[:, :0], 2.0).tolist() == logits.tolist()


@pytest.mark.parametrize("penalty", [1e-40, 1e-300, 1e300])
def test_an_extreme_penalty_keeps_every_score_a_number(penalty):
    """A penalty whose quotient or product leaves float32 holds the score at its largest
    finite value: the step still normalizes, and the search still outputs words."""
    got = penalize_repeats(torch.tensor([[3.0, -2.0, 1.0]]), torch.tensor([[0, 1]]), penalty)
    assert torch.isfinite(got).all() and got[0, 2] == 1.0
    assert torch.isfinite(torch.log_softmax(got, -1)).all()
    out = load_translator(GOLDEN).translate(["3 1 4", "7 7"], beam_size=2,
                                            repetition_penalty=penalty)
    assert all(out)


def test_blocking_forbids_the_tokens_that_complete_a_held_ngram():
    history = torch.tensor([[4, 5, 6, 4, 5, 4], [4, 5, 6, 4, 5, 4]])
    logp = torch.zeros(2, 8)
    for n, banned in [(1, {4, 5, 6}), (2, {5}), (3, set()), (7, set())]:
        got = block_repeated_ngrams(logp.clone(), history, n)
        assert {i for i, x in enumerate(got[0].tolist()) if x == -math.inf} == banned, n
    got = block_repeated_ngrams(logp.clone(), torch.tensor([[4, 5, 6, 4, 5]]), 3)
    assert got[0].tolist().index(-math.inf) == 6  # "4 5" was followed by 6 once


def _walk(model, sent, *, penalty, limit):
    """The greedy chain of sentence ``sent`` with the penalty applied by hand, and its
    log-probability: every step's scores are the Markov table's row of the last token."""
    tokens, logp, last = [], 0.0, BOS
    for _ in range(limit):
        logits = model.table[sent, last].clone()
        for tok in set(tokens):
            logits[tok] = logits[tok] / penalty if logits[tok] > 0 else logits[tok] * penalty
        step = torch.log_softmax(logits, -1)
        last = int(step.argmax())
        logp += float(step[last])
        if last == EOS:
            break
        tokens.append(last)
    return tokens, logp


def test_greedy_search_takes_each_step_with_the_penalty_by_hand():
    model = MarkovModel(12, seed=4)
    src = torch.arange(12)[:, None]
    got = greedy_hypotheses(model, src, None, bos_id=BOS, eos_id=EOS, max_output_len=8,
                            alpha=0.0, rules=Constraints(repetition_penalty=3.0))
    plain = greedy_search(model, src, None, bos_id=BOS, eos_id=EOS, max_output_len=8)
    for s, hyp in enumerate(got):
        tokens, logp = _walk(model, s, penalty=3.0, limit=8)
        assert hyp.tokens == tokens and hyp.log_prob == pytest.approx(logp, abs=1e-5), s
    assert [h.tokens for h in got] == greedy_search(
        model, src, None, bos_id=BOS, eos_id=EOS, max_output_len=8, repetition_penalty=3.0)
    assert [h.tokens for h in got] != plain  # the penalty changed some output


def test_beam_hypotheses_score_their_penalized_steps():
    """Every hypothesis a beam returns has the log-probability of its steps scored by hand
    with the penalty of the tokens before each."""
    model = MarkovModel(6, seed=5)
    src = torch.arange(6)[:, None]
    found = beam_search(model, src, None, bos_id=BOS, eos_id=EOS, beam_size=3,
                        max_output_len=6, alpha=0.0, return_all=True, repetition_penalty=0.5)
    assert [h[0].tokens for h in found] != beam_search(
        model, src, None, bos_id=BOS, eos_id=EOS, beam_size=3, max_output_len=6, alpha=0.0)
    for s, hyps in enumerate(found):
        for h in hyps:
            total, last, seq = 0.0, BOS, [*h.tokens, EOS][: len(h.tokens) + (len(h.tokens) < 6)]
            for i, tok in enumerate(seq):
                logits = model.table[s, last].clone()
                held = torch.tensor(sorted(set(seq[:i])), dtype=torch.long)
                logits[held] = torch.where(logits[held] > 0, logits[held] / 0.5,
                                           logits[held] * 0.5)
                total += float(torch.log_softmax(logits, -1)[tok])
                last = tok
            assert h.log_prob == pytest.approx(total, abs=1e-5), (s, h)


def _repeats(tokens, n):
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) < len(grams)


@pytest.fixture(scope="module")
def untrained():
    """The golden run's model with untrained weights: it repeats tokens."""
    torch.manual_seed(0)
    return build_model(load_translator(GOLDEN).run.model).eval()


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("beam_size", [1, 4])
def test_no_output_repeats_an_ngram_when_blocked(untrained, n, beam_size):
    g = torch.Generator().manual_seed(n)
    src = torch.randint(4, 24, (40, 6), generator=g)

    def outputs(**rules):
        if beam_size == 1:
            return greedy_search(untrained, src, None, bos_id=BOS, eos_id=EOS,
                                 max_output_len=14, **rules)
        found = beam_search(untrained, src, None, bos_id=BOS, eos_id=EOS, beam_size=beam_size,
                            max_output_len=14, return_all=True, **rules)
        return [h.tokens for hyps in found for h in hyps]  # every hypothesis, not the best

    assert any(_repeats(t, n) for t in outputs())  # the model repeats itself unblocked
    blocked = outputs(no_repeat_ngram=n)
    assert blocked and not any(_repeats(t, n) for t in blocked)
    assert sum(map(len, blocked)) >= 40  # still outputs, not empty ones


def test_both_off_decodes_as_recorded():
    recorded = json.loads((GOLDEN.parent / "run-format-2.decoded.json").read_text())
    tr = load_translator(GOLDEN)
    for beam in (1, 5):
        assert tr.translate(recorded["sentences"], beam_size=beam, no_repeat_ngram=0,
                            repetition_penalty=1.0) == recorded[f"beam{beam}"]


@pytest.mark.parametrize("rules, named", [
    (dict(no_repeat_ngram=-1), "no_repeat_ngram"), (dict(no_repeat_ngram=True), "no_repeat_ngram"),
    (dict(no_repeat_ngram="2"), "no_repeat_ngram"), (dict(no_repeat_ngram=1.5), "no_repeat_ngram"),
    (dict(repetition_penalty=0), "repetition_penalty"),
    (dict(repetition_penalty=-1.0), "repetition_penalty"),
    (dict(repetition_penalty=math.nan), "repetition_penalty"),
    (dict(repetition_penalty=math.inf), "repetition_penalty"),
    (dict(repetition_penalty=True), "repetition_penalty")])
def test_bad_constraints_are_refused_naming_them(rules, named):
    model = MarkovModel(1)
    for search in (greedy_search, beam_search):
        with pytest.raises(ValueError, match=rf"^{named} must be "):
            search(model, torch.zeros(1, 1, dtype=torch.long), None, bos_id=BOS, eos_id=EOS,
                   **rules)
    with pytest.raises(ValueError, match=rf"^{named} must be "):
        load_translator(GOLDEN).translate([], **rules)  # before anything is translated
