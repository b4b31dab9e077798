"""Ensembles: several runs decoding as one, the mean of their log-probabilities at every
step. Oracles: the members called one by one, and the golden run alone (an ensemble of a
run with itself decodes exactly as the run)."""

import argparse

import pytest
import torch

from attnkit.commands._decoding import check_decoding_memory
from attnkit.data.tokenizer import BOS_ID, EOS_ID
from attnkit.decode.ensemble import EnsembleDecoder
from attnkit.decode.search import beam_search
from attnkit.decode.translator import EnsembleTranslator, load_translator

from .._ensemble import (
    GOLDEN,
    SOURCES,
    noisy_translator,
    swapped_translator,
    wider_translator,
    write_run,
)

SENTENCES = SOURCES[:60]


@pytest.fixture(scope="module")
def golden():
    return load_translator(GOLDEN)


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    return load_translator(write_run(tmp_path_factory.mktemp("noisy"), noisy_translator()))


@pytest.mark.parametrize("beam_size", [1, 5])
def test_an_ensemble_of_a_run_with_itself_decodes_exactly_as_the_run(golden, beam_size):
    again = load_translator(GOLDEN)
    ensemble = EnsembleTranslator.of([golden, again])
    assert ensemble.translate(SENTENCES, beam_size=beam_size) == \
        golden.translate(SENTENCES, beam_size=beam_size)
    assert ensemble.translate_n_best(SENTENCES, n_best=3, beam_size=max(3, beam_size)) == \
        golden.translate_n_best(SENTENCES, n_best=3, beam_size=max(3, beam_size))


def _source(translator, sentences):
    ids = [translator.tokenizers.src.encode(s) + [EOS_ID] for s in sentences]
    width = max(map(len, ids))
    src = torch.tensor([x + [0] * (width - len(x)) for x in ids])
    return src, torch.tensor([len(x) for x in ids])


@torch.no_grad()
def test_every_step_scores_the_mean_of_the_members_log_probs(golden, noisy):
    """Step by step against the two models called separately, across a reorder of the
    rows (as a beam reorders them) and a drop of one."""
    members = [golden.model, noisy.model]
    ensemble = EnsembleDecoder(members)
    src, lens = _source(golden, ["3 1 4", "1 5 9 2", "6"])
    state = ensemble.init_state(ensemble.encode(src, lens), lens)
    alone = [m.init_state(m.encode(src, lens), lens) for m in members]
    tokens = torch.full((3, 1), BOS_ID)
    for step in range(4):
        got, state = ensemble.decode_step(tokens, state)
        each = []
        for i, m in enumerate(members):
            logits, alone[i] = m.decode_step(tokens, alone[i])
            each.append(torch.log_softmax(logits.float(), -1))
        torch.testing.assert_close(got, (each[0] + each[1]) / 2, rtol=0, atol=1e-6)
        assert not torch.equal(each[0], each[1])  # two different models
        tokens = got[:, -1].argmax(-1, keepdim=True)
        if step == 1:
            rows = torch.tensor([2, 0]) if tokens.shape[0] == 3 else torch.tensor([0])
            state = ensemble.reorder_state(state, rows)
            alone = [m.reorder_state(s, rows) for m, s in zip(members, alone, strict=True)]
            tokens = tokens[rows]


@pytest.mark.parametrize("beam_size", [1, 4])
def test_an_ensemble_of_two_runs_translates_otherwise_than_either(golden, noisy, beam_size):
    ensemble = EnsembleTranslator.of([golden, noisy])
    got = ensemble.translate(SENTENCES, beam_size=beam_size)
    one = golden.translate(SENTENCES, beam_size=beam_size)
    two = noisy.translate(SENTENCES, beam_size=beam_size)
    assert any(e != a and e != b for e, a, b in zip(got, one, two, strict=True))


def test_beam_search_ranks_by_the_sum_of_the_mean_log_probs(golden, noisy):
    """A hypothesis' score is the sum of its tokens' mean log-probabilities (not normalized
    again), as teacher-forcing the two members on it gives."""
    ensemble = EnsembleDecoder([golden.model, noisy.model])
    src, lens = _source(golden, ["1 5 9 2"])
    hyp = beam_search(ensemble, src, lens, bos_id=BOS_ID, eos_id=EOS_ID, beam_size=3,
                      max_output_len=12, alpha=0.0, return_all=True)[0][0]
    tgt = torch.tensor([[BOS_ID, *hyp.tokens]])
    want = torch.tensor([*hyp.tokens, EOS_ID])
    with torch.no_grad():
        mean = sum(torch.log_softmax(m(src, tgt, lens, torch.tensor([tgt.shape[1]]))[0], -1)
                   for m in (golden.model, noisy.model)) / 2
    assert hyp.log_prob == pytest.approx(float(mean.gather(1, want[:, None]).sum()), abs=1e-4)


def test_members_of_other_sizes_decode_together(golden, tmp_path):
    wider = load_translator(write_run(tmp_path, wider_translator()))
    ensemble = EnsembleTranslator.of([golden, wider])
    assert ensemble.positions == golden.positions == 16  # the smaller table
    out = ensemble.translate(SENTENCES[:8], beam_size=3)
    assert len(out) == 8 and ensemble.memory_config == (golden.run.model, wider.run.model)


@pytest.mark.parametrize("side, named", [("both", "source"), ("src", "source"),
                                         ("tgt", "target")])
def test_runs_of_other_tokenizers_are_refused_naming_both(golden, tmp_path, side, named):
    other = load_translator(write_run(tmp_path, swapped_translator(side)))
    with pytest.raises(ValueError) as e:
        EnsembleTranslator.of([golden, other])
    line = str(e.value)
    assert "\n" not in line and f"their {named} tokenizers differ" in line
    assert str(golden.path) in line and str(other.path) in line


def test_the_memory_check_counts_every_member(golden, monkeypatch):
    from attnkit import _memory
    from attnkit.models.sizes import decoding_memory

    args = argparse.Namespace(beam_size=8, max_output_len=12)
    one = decoding_memory(golden.run.model, rows=3 * 8, steps=12).total
    monkeypatch.setattr(_memory, "available_memory",
                        lambda: _memory.Budget(int(1.5 * one), "a test budget"))
    check_decoding_memory(args, golden, 3)  # one model fits
    with pytest.raises(MemoryError, match="for the weights of 2 models"):
        check_decoding_memory(args, EnsembleTranslator.of([golden, golden]), 3)


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_a_precision_applies_to_every_member(golden, noisy, precision):
    ensemble = EnsembleTranslator.of([golden, noisy]).with_precision(precision)
    assert [m.precision for m in ensemble.members] == [precision, precision]
    assert ensemble.precision == precision
    if precision == "int8":  # every member's linear layers quantized
        assert all(type(m.model.output).__name__ != "Linear" for m in ensemble.members)
    assert len(ensemble.translate(SENTENCES[:4], beam_size=2)) == 4


def test_an_ensemble_refuses_no_member_and_mixed_precisions(golden, noisy):
    with pytest.raises(ValueError, match="at least one"):
        EnsembleTranslator.of([])
    with pytest.raises(ValueError, match="at least one"):
        EnsembleDecoder([])
    with pytest.raises(ValueError, match=r"\(fp32\) and .* \(int8\): an ensemble runs in one"):
        EnsembleTranslator.of([golden, noisy.with_precision("int8")])
    with pytest.raises(TypeError, match="decode step by step"):
        EnsembleDecoder([golden.model, torch.nn.Linear(2, 2)])
