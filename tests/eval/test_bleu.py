"""Tests for attnkit.eval.bleu: sacreBLEU wrappers against hand-computed values."""

from __future__ import annotations

import math

import pytest
import sacrebleu

from attnkit.eval.bleu import corpus_bleu, corpus_chrf, tokenized_lowercase_bleu

from .._data import DATA

MULTI30K = DATA / "multi30k"


def test_identical_text_scores_100():
    hyps = ["A man rides a bike.", "Two dogs play in the snow."]
    for result in (corpus_bleu(hyps, hyps), tokenized_lowercase_bleu(hyps, hyps)):
        assert result.score == pytest.approx(100.0)
    assert corpus_chrf(hyps, hyps).score == pytest.approx(100.0)


def test_hand_computed_bleu():
    # hyp:  the cat sat on the mat      ref: the cat sat on a mat
    # clipped matches / totals: 1-grams 5/6, 2-grams 3/5, 3-grams 2/4, 4-grams 1/3;
    # equal lengths, so BP = 1 and BLEU = (5/6 * 3/5 * 2/4 * 1/3) ** (1/4)
    r = corpus_bleu(["the cat sat on the mat"], ["the cat sat on a mat"])
    assert r.score == pytest.approx(100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25, rel=1e-12)
    assert r.counts == (5, 3, 2, 1) and r.totals == (6, 5, 4, 3)
    assert r.brevity_penalty == 1.0 and (r.sys_len, r.ref_len) == (6, 6)


def test_brevity_penalty_by_hand():
    # hyp is the first 4 tokens of a 6-token ref: all precisions 1, BP = exp(1 - 6/4)
    r = corpus_bleu(["the cat sat on"], ["the cat sat on the mat"])
    assert r.brevity_penalty == pytest.approx(math.exp(1 - 6 / 4), rel=1e-12)
    assert r.score == pytest.approx(100 * math.exp(1 - 6 / 4), rel=1e-12)


def test_casing_and_tokenization_variants():
    hyps, refs = ["The Cat sat."], ["the cat sat."]
    cased = corpus_bleu(hyps, refs)
    lower = tokenized_lowercase_bleu(hyps, refs)
    assert cased.score < 100 and lower.score == pytest.approx(100.0)
    # 13a splits the final period; pre-tokenized mode splits on spaces only
    assert lower.sys_len == 4
    pre = tokenized_lowercase_bleu(["the cat sat ."], ["the cat sat ."], pretokenized=True)
    assert pre.score == pytest.approx(100.0) and pre.sys_len == 4
    glued = tokenized_lowercase_bleu(["the cat sat."], ["the cat sat ."], pretokenized=True)
    assert glued.sys_len == 3 and glued.score < 100


def test_signatures_and_labels_say_how_it_was_computed():
    v = sacrebleu.__version__
    hyps, refs = ["a b c d"], ["a b c d"]
    assert corpus_bleu(hyps, refs).signature == (
        f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{v}"
    )
    low = tokenized_lowercase_bleu(hyps, refs)
    assert "case:lc" in low.signature and "tok:13a" in low.signature
    assert "lowercased" in low.label
    pre = tokenized_lowercase_bleu(hyps, refs, pretokenized=True)
    assert "case:lc" in pre.signature and "tok:none" in pre.signature
    chrf = corpus_chrf(hyps, refs)
    assert chrf.signature.startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0")
    assert str(corpus_bleu(hyps, refs)).startswith("BLEU (cased, 13a) = 100.00 (nrefs:1|")


def test_multiple_references_per_hypothesis():
    hyps = ["the cat sat on the mat", "a dog"]
    refs = [["the cat sat on a mat", "the cat sat on the mat"], ["a dog", "one dog"]]
    ours = corpus_bleu(hyps, refs)
    streams = [[r[0] for r in refs], [r[1] for r in refs]]
    direct = sacrebleu.corpus_bleu(hyps, streams)
    assert ours.score == pytest.approx(direct.score, rel=1e-12) and ours.score == pytest.approx(100)
    assert "nrefs:2" in ours.signature


def test_input_errors():
    with pytest.raises(ValueError, match="same length, got 2 hyps and 1 refs"):
        corpus_bleu(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="not a single str"):
        corpus_bleu("a b", "a b")
    with pytest.raises(ValueError, match="same number"):
        corpus_bleu(["a", "b"], [["a"], ["b", "c"]])


@pytest.mark.skipif(not MULTI30K.is_dir(), reason=f"{MULTI30K} absent")
def test_real_multi30k_reference_against_itself_and_a_degraded_copy():
    refs = (MULTI30K / "raw" / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()
    assert corpus_bleu(refs, refs).score == pytest.approx(100.0)
    # dropping the last word of every sentence: lower BLEU and chrF, still matches sacrebleu
    hyps = [" ".join(r.split()[:-1]) for r in refs]
    ours = corpus_bleu(hyps, refs)
    assert 0 < ours.score < 100
    assert ours.score == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, rel=1e-12)
    assert corpus_chrf(hyps, refs).score == pytest.approx(
        sacrebleu.corpus_chrf(hyps, [refs]).score, rel=1e-12
    )
    tok = (MULTI30K / "tok" / "test_2016_flickr.lc.norm.tok.de").read_text().splitlines()
    assert tokenized_lowercase_bleu(tok, tok, pretokenized=True).score == pytest.approx(100.0)
