"""Each sentence stops at its own output limit, in one search call per batch: a batch of
per-sentence limits gives what each sentence gives alone, for greedy, beam and n-best.

The model never emits ``<eos>`` (tests/_no_eos.py), so every output runs to its limit
and a limit taken from another sentence of the batch shows in the output."""

import pytest
import torch

from attnkit._cpu import torch_threads
from attnkit.data.tokenizer import BOS_ID, EOS_ID
from attnkit.decode.search import beam_search, greedy_hypotheses, greedy_search, n_best_search
from attnkit.decode.translator import _source_batch, translate_n_best, translate_sentences

from .._no_eos import POSITIONS, no_eos_translator
from .test_search import BOS, EOS, MarkovModel

#: Very different lengths: default limits 14, 16, 20, 36 and 63 (the table's 64 - 1)
SENTENCES = ["5", "3 1", "7 7 2 9", "1 2 3 4 5 6 7 8 9 0 1 2", " ".join("9876543210" * 3)]
LIMITS = [14, 16, 20, 36, 63]
SEARCHES = {  # name: (beam size, alpha, n_best or None)
    "greedy": (1, 0.6, None),
    "beam3_alpha0.6": (3, 0.6, None),
    "beam3_alpha0": (3, 0.0, None),
    "nbest3_alpha0.6": (3, 0.6, 3),
    "nbest1_greedy": (1, 0.6, 1),
}


@pytest.fixture(scope="module")
def no_eos():
    return no_eos_translator()[0]


@pytest.fixture(autouse=True)
def _one_thread():
    """One thread: the same float32 rounding, alone and batched, on every machine."""
    with torch_threads(1):
        yield


def _search(model, src, lens, limits, beam_size, alpha, n_best):
    kw = dict(bos_id=BOS_ID, eos_id=EOS_ID, max_output_len=limits)
    if n_best is not None:
        found = n_best_search(model, src, lens, n_best=n_best, beam_size=beam_size,
                              alpha=alpha, **kw)
        return [[(h.tokens, h.score) for h in hyps] for hyps in found]
    if beam_size == 1:
        return greedy_search(model, src, lens, **kw)
    return beam_search(model, src, lens, beam_size=beam_size, alpha=alpha, **kw)


def test_the_sentences_have_the_limits_they_are_meant_to(no_eos):
    src, lens = _source_batch(no_eos.tokenizers, SENTENCES, POSITIONS, "cpu")
    assert [min(2 * n + 10, POSITIONS - 1) for n in lens.tolist()] == LIMITS


@pytest.mark.parametrize("name", SEARCHES)
@pytest.mark.parametrize("as_tensor", [False, True])
def test_per_sentence_limits_in_one_call_give_each_sentence_alone(no_eos, name, as_tensor):
    beam_size, alpha, n_best = SEARCHES[name]
    src, lens = _source_batch(no_eos.tokenizers, SENTENCES, POSITIONS, "cpu")
    limits = torch.tensor(LIMITS) if as_tensor else list(LIMITS)
    got = _search(no_eos.model, src, lens, limits, beam_size, alpha, n_best)
    for i, limit in enumerate(LIMITS):
        n = int(lens[i])
        alone = _search(no_eos.model, src[i:i + 1, :n], lens[i:i + 1], limit, beam_size,
                        alpha, n_best)[0]
        if n_best is None:
            assert got[i] == alone, (name, SENTENCES[i])
            best = alone
        else:  # the same hypotheses; their float32 scores batched or not
            assert [h for h, _ in got[i]] == [h for h, _ in alone], (name, SENTENCES[i])
            assert [s for _, s in got[i]] == pytest.approx([s for _, s in alone], rel=1e-5)
            best = alone[0][0]
        assert len(best) == limit  # the limit bound: no <eos> came first


@pytest.mark.parametrize("name", SEARCHES)
def test_a_sentence_translates_the_same_alone_and_beside_longer_ones(no_eos, name):
    """translate_sentences / translate_n_best: one batch of very different lengths (and a
    blank line) against each sentence alone; each output is its own limit long."""
    beam_size, alpha, n_best = SEARCHES[name]
    texts = [*SENTENCES, ""]
    kw = dict(beam_size=beam_size, alpha=alpha, positions=POSITIONS)
    if n_best is None:
        together = translate_sentences(no_eos.model, no_eos.tokenizers, texts, **kw)
        alone = [translate_sentences(no_eos.model, no_eos.tokenizers, [t], **kw)[0]
                 for t in texts]
        lengths = [len(x.split()) for x in together]
    else:
        found = translate_n_best(no_eos.model, no_eos.tokenizers, texts, n_best=n_best, **kw)
        each = [translate_n_best(no_eos.model, no_eos.tokenizers, [t], n_best=n_best,
                                 **kw)[0] for t in texts]
        for hyps, own in zip(found, each, strict=True):  # float32 sums: batched or not
            assert [s for _, s in hyps] == pytest.approx([s for _, s in own], rel=1e-5)
        together, alone = ([[t for t, _ in hyps] for hyps in x] for x in (found, each))
        lengths = [len(hyps[0].split()) for hyps in together]
    assert together == alone
    assert lengths == [*LIMITS, 0]


@pytest.mark.parametrize("K", [2, 3, 4])
@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.5])
def test_beam_rules_hold_at_each_sentences_own_limit(K, alpha):
    """A model that does end sentences (exact log-probabilities, no rounding): the <eos>
    candidates, the early stop and the live beams counted at the limit are those of a
    batch of that sentence's limit alone, every hypothesis and score the same."""
    model = MarkovModel(6, seed=3)
    src = torch.arange(6)[:, None]
    limits = [1, 6, 2, 5, 3, 4]
    kw = dict(bos_id=BOS, eos_id=EOS, beam_size=K, alpha=alpha, return_all=True)
    together = beam_search(model, src, None, max_output_len=limits, **kw)
    for s, limit in enumerate(limits):
        assert together[s] == beam_search(model, src[s:s + 1], None, max_output_len=limit,
                                          **kw)[0], s
    scored = greedy_hypotheses(model, src, None, bos_id=BOS, eos_id=EOS, max_output_len=limits,
                               alpha=alpha)
    for s, limit in enumerate(limits):
        assert scored[s] == greedy_hypotheses(model, src[s:s + 1], None, bos_id=BOS,
                                              eos_id=EOS, max_output_len=limit, alpha=alpha)[0]


@pytest.mark.parametrize("limits, message", [
    ([3, 4], r"max_output_len must be a positive int or one int per sentence, shape \(3,\); "
             r"got shape \(2,\)$"),
    (torch.tensor([[3, 4, 5]]), r"shape \(3,\); got shape \(1, 3\)$"),
    (torch.tensor([3.0, 4.0, 5.0]), r"max_output_len must be a positive int or one int per "
                                    r"sentence, shape \(3,\); got a torch.float32 tensor$"),
    (torch.tensor([True, True, True]), r"got a torch.bool tensor$"),
    ([3, 0, 5], r"max_output_len\[1\] must be a positive int; got 0$"),
    (torch.tensor([3, 4, -2]), r"max_output_len\[2\] must be a positive int; got -2$"),
    ([3, 4.0, 5], r"max_output_len\[1\] must be a positive int; got 4.0$"),
    ([True, 4, 5], r"max_output_len\[0\] must be a positive int; got True$"),
    ("12", r"max_output_len must be a positive int; got '12'$"),
])
def test_bad_per_sentence_limits_are_refused_in_one_line(limits, message):
    model, src = MarkovModel(3), torch.arange(3)[:, None]
    for search in (greedy_search, beam_search):
        with pytest.raises(ValueError, match=message):
            search(model, src, None, bos_id=BOS, eos_id=EOS, max_output_len=limits)
    with pytest.raises(ValueError, match=message):
        n_best_search(model, src, None, bos_id=BOS, eos_id=EOS, n_best=2, beam_size=2,
                      max_output_len=limits)


def test_a_huge_limit_costs_only_the_steps_taken():
    """Greedy search used to allocate (B, max_output_len) tokens up front: a limit of
    10^12 asked for 8 TB before the first step. Sentences that end early end it."""
    model = MarkovModel(2, seed=4)
    with torch.no_grad():
        model.table[..., EOS] = 0.0  # <eos> is certain after every token
    src = torch.arange(2)[:, None]
    assert greedy_search(model, src, None, bos_id=BOS, eos_id=EOS,
                         max_output_len=10**12) == [[], []]
    assert greedy_search(model, src, None, bos_id=BOS, eos_id=EOS,
                         max_output_len=[10**12, 1]) == [[], []]
    assert greedy_search(model, src, None, bos_id=BOS, eos_id=EOS,
                         max_output_len=[10**30, 1]) == [[], []]  # past int64
