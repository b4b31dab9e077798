"""Tests for attnkit.data.subwords: unigram sampling and BPE-dropout with numpy's generator."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from attnkit.data.subwords import BPE, UNIGRAM, SubwordSampler, model_type
from attnkit.data.tokenizer import SentencePieceTokenizer

from .test_tokenizer import SENTENCES


def test_unigram_draws_follow_the_smoothed_distribution():
    """Each segmentation of a word is drawn with probability ∝ exp(alpha · its score)."""
    tok = SentencePieceTokenizer.train(SENTENCES, vocab_size=50, model_type="unigram")
    sp, alpha, word = tok._sp, 0.1, "▁women"
    pieces = {sp.id_to_piece(i): (i, sp.get_score(i)) for i in range(4, tok.vocab_size)}

    def spellings(rest):
        if not rest:
            yield (), 0.0
        for k in range(1, len(rest) + 1):
            if rest[:k] in pieces:
                i, score = pieces[rest[:k]]
                for more, total in spellings(rest[k:]):
                    yield (i, *more), score + total

    weights = {ids: math.exp(alpha * score) for ids, score in spellings(word)}
    assert len(weights) >= 3
    draws = Counter(tuple(x) for x in tok.sample([word[1:]] * 4000, alpha=alpha, seed=0))
    assert set(draws) <= set(weights)
    for ids, w in weights.items():
        assert draws[ids] / 4000 == pytest.approx(w / sum(weights.values()), abs=0.03), ids


def test_bpe_dropout_skips_merges_with_the_probability_given():
    tok = SentencePieceTokenizer.train(SENTENCES, vocab_size=50, model_type="bpe")
    texts = SENTENCES[:4]
    # no merge skipped: the model's own segmentation; every merge skipped: characters
    assert tok.sample(texts, alpha=1e-12, seed=0) == [tok.encode(t) for t in texts]
    for text, ids in zip(texts, tok.sample(texts, alpha=1.0, seed=0)):
        assert [tok.id_to_piece(i) for i in ids] == list("▁" + text.replace(" ", "▁"))


def test_model_type_is_read_from_the_model():
    for kind, value in (("unigram", UNIGRAM), ("bpe", BPE)):
        tok = SentencePieceTokenizer.train(SENTENCES, vocab_size=50, model_type=kind)
        assert model_type(tok.model_proto) == value


def test_a_word_or_char_model_is_refused_naming_its_type():
    import io

    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(SENTENCES), model_writer=buf,
                                   model_type="char", minloglevel=2, vocab_size=30)
    proto = buf.getvalue()
    with pytest.raises(ValueError, match=r"^subword sampling needs a unigram or bpe "
                                         r"sentencepiece model; this one is char$"):
        SubwordSampler(spm.SentencePieceProcessor(model_proto=proto), proto, 0.1)


@pytest.mark.parametrize("kind", ["unigram", "bpe"])
def test_unknown_characters_and_empty_texts_keep_the_models_segmentation(kind):
    tok = SentencePieceTokenizer.train(SENTENCES, vocab_size=50, model_type=kind)
    texts = ["a man 🐎 rides ☃☃ on the beach", "", "   ", "ünder the brown dog"]
    fixed = [tok.encode(t) for t in texts]
    for seed in range(3):
        drawn = tok.sample(texts, alpha=1.0 if kind == "bpe" else 0.2, seed=seed)
        assert [tok.decode(x) for x in drawn] == [tok.decode(x) for x in fixed]
        assert drawn[1] == drawn[2] == []
        assert drawn[0].count(tok.unk_id) == fixed[0].count(tok.unk_id) > 0
