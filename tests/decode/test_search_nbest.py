"""n-best output: the K best hypotheses of the search (the translator's and the command's
in tests/decode/test_translator.py and tests/commands/test_translate.py).

Oracles: the tiny Markov 'model' of the search tests, whose hypotheses can all be
enumerated and scored by hand; and the golden checkpoint (digits -> English words),
whose n-best lists must start with the plain translation.
"""

import argparse
import itertools
import math

import pytest
import torch

from attnkit.decode.search import (
    beam_search,
    greedy_hypotheses,
    greedy_search,
    length_penalty,
    n_best_search,
)
from attnkit.decode.translator import load_translator

from .test_search import BOS, EOS, MarkovModel, seq_log_prob
from .test_translator import GOLDEN, SENTENCES


def every_output(model, sent, max_len, alpha):
    """(score, tokens) of every output within ``max_len`` tokens, best first: those that end
    (``n < max_len`` content tokens and ``<eos>``) and those cut at the limit (``max_len``
    content tokens, scored without ``<eos>``, as the search scores its live beams there)."""
    out = []
    for n in range(max_len + 1):
        for seq in itertools.product([4, 5, 6], repeat=n):
            lp = seq_log_prob(model, sent, list(seq))
            if n == max_len:  # cut: no <eos> step
                lp -= float(model.table[sent, seq[-1] if seq else BOS, EOS])
            out.append((lp / length_penalty(n + (n < max_len), alpha), list(seq)))
    return sorted(out, key=lambda x: -x[0])


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_a_wide_beam_gives_the_exact_n_best_in_order(alpha):
    model = MarkovModel(3, seed=4)
    found = n_best_search(model, torch.arange(3)[:, None], None, bos_id=BOS, eos_id=EOS,
                          n_best=5, beam_size=64, max_output_len=4, alpha=alpha)
    for s, hyps in enumerate(found):
        want = every_output(model, s, 4, alpha)[:5]
        assert [h.tokens for h in hyps] == [t for _, t in want], s
        for h, (score, _) in zip(hyps, want, strict=True):
            assert math.isclose(h.score, score, rel_tol=1e-5, abs_tol=1e-6)


def test_n_best_of_a_narrow_beam_starts_with_the_beam_output_and_is_distinct():
    model = MarkovModel(6, seed=5)
    src = torch.arange(6)[:, None]
    best = beam_search(model, src, None, bos_id=BOS, eos_id=EOS, beam_size=3, max_output_len=6)
    found = n_best_search(model, src, None, bos_id=BOS, eos_id=EOS, n_best=3, beam_size=3,
                          max_output_len=6)
    for s, hyps in enumerate(found):
        assert len(hyps) == 3 and hyps[0].tokens == best[s]
        assert len({tuple(h.tokens) for h in hyps}) == 3
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)


def test_greedy_hypotheses_are_the_greedy_output_with_its_score():
    model = MarkovModel(5, seed=2)
    src = torch.arange(5)[:, None]
    greedy = greedy_search(model, src, None, bos_id=BOS, eos_id=EOS, max_output_len=6)
    hyps = greedy_hypotheses(model, src, None, bos_id=BOS, eos_id=EOS, max_output_len=6,
                             alpha=0.6)
    assert [h.tokens for h in hyps] == greedy
    for s, h in enumerate(hyps):
        if len(h.tokens) < 6:  # ended with <eos>: its probability counts
            lp = seq_log_prob(model, s, h.tokens)
            assert math.isclose(h.score, lp / length_penalty(len(h.tokens) + 1, 0.6),
                                rel_tol=1e-5)
    one = n_best_search(model, src, None, bos_id=BOS, eos_id=EOS, n_best=1, beam_size=1,
                        max_output_len=6, alpha=0.6)
    assert [[h.tokens for h in x] for x in one] == [[g] for g in greedy]


def test_more_hypotheses_than_the_beam_holds_are_refused_naming_both():
    model = MarkovModel(1)
    src = torch.zeros(1, 1, dtype=torch.long)
    with pytest.raises(ValueError, match=r"n_best must be <= beam_size .*got n_best=5, "
                                         r"beam_size=4"):
        n_best_search(model, src, None, bos_id=BOS, eos_id=EOS, n_best=5, beam_size=4)
    with pytest.raises(ValueError, match=r"n_best must be a positive int; got 0"):
        n_best_search(model, src, None, bos_id=BOS, eos_id=EOS, n_best=0, beam_size=4)


def test_the_n_best_sizes_are_checked_once_per_call(monkeypatch):
    """One check (attnkit.decode.search.check_n_best) serves the search, the translator
    and the command line; a call through the translator runs it once, not per layer."""
    from attnkit.commands import translate as translate_command
    from attnkit.decode import search, translator

    calls = []

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    real = search.check_n_best
    monkeypatch.setattr(search, "check_n_best", counted)
    monkeypatch.setattr(translator, "check_n_best", counted)
    tr = load_translator(GOLDEN)
    tr.translate_n_best(SENTENCES[:2], n_best=2, beam_size=3)
    assert calls == [(2, 3)]
    args = argparse.Namespace(n_best=5, beam_size=4, engine="attnkit")
    with pytest.raises(ValueError, match="--n-best 5 needs --beam-size >= 5"):
        translate_command.check_n_best_flags(args)
    assert calls[1:] == [(5, 4)]  # the flags' check is that same function
