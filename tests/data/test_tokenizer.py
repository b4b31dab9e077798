"""Tests for attnkit.data.tokenizer: char, word (d2l) and SentencePiece vocabularies."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import sentencepiece as spm

from attnkit.data.corpus import load_multi30k, read_tsv_pairs
from attnkit.data.generated import date_alphabet, generate_pairs
from attnkit.data.tokenizer import (
    SPECIAL_TOKENS,
    CharTokenizer,
    SampledPairs,
    SentencePieceTokenizer,
    TokenizerPair,
    WordTokenizer,
    load_tokenizer,
)

from .._data import MULTI30K, TATOEBA, needs_multi30k, needs_tatoeba


def d2l_preprocess(text: str) -> str:
    """``preprocess_nmt`` of "Dive into Deep Learning" (PyTorch edition), verbatim logic."""

    def no_space(char, prev_char):
        return char in set(",.!?") and prev_char != " "

    text = text.replace("\u202f", " ").replace("\xa0", " ").lower()
    out = [
        " " + char if i > 0 and no_space(char, text[i - 1]) else char for i, char in enumerate(text)
    ]
    return "".join(out)


# ------------------------------------------------------------------------ shared rules
@pytest.mark.parametrize(
    "tok", [CharTokenizer(["a", "b"]), WordTokenizer.train(["a b"], min_freq=1)]
)
def test_special_ids_are_fixed(tok):
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    assert tok.idx_to_token[:4] == list(SPECIAL_TOKENS)


# --------------------------------------------------------------------------- chars
def test_char_tokenizer_round_trips_the_date_task(tmp_path):
    tok = CharTokenizer(date_alphabet())
    assert tok.vocab_size == 4 + len(date_alphabet())
    for src, tgt in generate_pairs(300, seed=0):
        for text in (src, tgt):
            ids = tok.encode(text)
            assert len(ids) == len(text) and min(ids) >= 4
            assert tok.decode(ids) == text
    assert tok.encode("1é") == [tok.token_to_idx["1"], 1]  # unknown char -> <unk>
    # decode drops <pad>/<bos> and stops at the first <eos>
    one, two = tok.token_to_idx["1"], tok.token_to_idx["2"]
    assert tok.decode([2, one, 0, two, 3, one, one]) == "12"
    with pytest.raises(ValueError, match=r"ids must be in \[0, \d+\), got 999"):
        tok.decode([999])
    tok.save(tmp_path / "tok")
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["tokenizer.json"]
    again = load_tokenizer(tmp_path / "tok")
    assert isinstance(again, CharTokenizer) and again == tok


def test_char_tokenizer_train_and_errors():
    assert CharTokenizer.train(["ba", "ca"]).idx_to_token[4:] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="alphabet must hold single characters"):
        CharTokenizer(["ab"])
    with pytest.raises(TypeError, match="texts must be an iterable of strings, got a single str"):
        CharTokenizer.train("abc")


# --------------------------------------------------------------------------- words
def test_word_tokenizer_preprocessing_matches_the_book():
    assert WordTokenizer.tokenize("Go.") == ["go", "."]
    assert WordTokenizer.tokenize("Va\u202f!") == ["va", "!"]
    # like the book, only a space *before* punctuation is inserted
    assert WordTokenizer.tokenize("Hello,world!  ok?") == ["hello", ",world", "!", "ok", "?"]


@needs_tatoeba
def test_word_preprocessing_equals_d2l_on_real_tatoeba():
    corpus = read_tsv_pairs(TATOEBA)
    raw = [line.split("\t") for line in TATOEBA.read_text(encoding="utf-8").splitlines()]
    for (src, tgt), cols in zip(corpus.pairs, raw, strict=True):
        assert WordTokenizer.tokenize(src) == d2l_preprocess(cols[0]).split()
        assert WordTokenizer.tokenize(tgt) == d2l_preprocess(cols[1]).split()


def test_word_vocabulary_by_hand(tmp_path):
    texts = ["The cat sat.", "the dog sat!", "A cat."]
    # counts: the 2, cat 2, sat 2, . 2, dog 1, ! 1, a 1
    tok = WordTokenizer.train(texts, min_freq=2)
    assert tok.idx_to_token == list(SPECIAL_TOKENS) + [".", "cat", "sat", "the"]
    assert tok.encode("The dog sat.") == [7, 1, 6, 4]
    assert tok.decode([2, 7, 5, 6, 4, 3, 0]) == "the cat sat."
    full = WordTokenizer.train(texts, min_freq=1)
    assert full.idx_to_token[4:] == [".", "cat", "sat", "the", "!", "a", "dog"]
    full.save(tmp_path / "w")
    meta = json.loads((tmp_path / "w" / "tokenizer.json").read_text())
    assert meta["type"] == "word" and meta["tokens"] == full.idx_to_token
    assert load_tokenizer(tmp_path / "w") == full
    with pytest.raises(ValueError, match="min_freq must be a positive int; got 0"):
        WordTokenizer.train(texts, min_freq=0)


# ------------------------------------------------------------------- sentencepiece
@pytest.fixture(scope="module")
def multi30k_texts():
    if not MULTI30K.is_dir():
        pytest.skip(f"{MULTI30K} absent")
    train = load_multi30k(MULTI30K, "train", "en", "de").pairs[:2500]  # 5,000 sentences
    val = load_multi30k(MULTI30K, "val", "en", "de").pairs
    return train, val


@needs_multi30k
def test_sentencepiece_shared_vocab_on_multi30k(multi30k_texts, tmp_path):
    train, val = multi30k_texts
    texts = [s for pair in train for s in pair]  # source + target: shared vocabulary
    tok = SentencePieceTokenizer.train(texts, vocab_size=2000, model_type="unigram")
    assert tok.vocab_size == 2000
    assert [tok.id_to_piece(i) for i in range(4)] == list(SPECIAL_TOKENS)
    # lossless on held-out sentences of both languages
    for src, tgt in val[:300]:
        for text in (src, tgt):
            ids = tok.encode(text)
            assert min(ids) >= 4 and tok.decode(ids) == text
            assert tok.decode([2] + ids + [3, 0, 0]) == text
    assert tok.encode_pieces("A man in a blue shirt.") == [
        "▁A", "▁man", "▁in", "▁a", "▁blue", "▁shirt", ".",
    ]  # fmt: skip
    assert 1 in tok.encode("日本")  # unseen characters -> <unk>
    # deterministic: identical model bytes on retraining
    assert SentencePieceTokenizer.train(texts, vocab_size=2000) == tok
    # files only, and the round trip gives the same ids
    tok.save(tmp_path / "spm")
    assert sorted(p.name for p in (tmp_path / "spm").iterdir()) == ["spm.model", "tokenizer.json"]
    again = load_tokenizer(tmp_path / "spm")
    assert isinstance(again, SentencePieceTokenizer) and again == tok
    assert again.encode(val[0][1]) == tok.encode(val[0][1])


@needs_multi30k
def test_sentencepiece_bpe_per_language(multi30k_texts):
    train, _ = multi30k_texts
    en = SentencePieceTokenizer.train([s for s, _ in train], vocab_size=1000, model_type="bpe")
    de = SentencePieceTokenizer.train([t for _, t in train], vocab_size=1000, model_type="bpe")
    assert en.vocab_size == de.vocab_size == 1000 and en != de
    assert "▁Männer" in {de.id_to_piece(i) for i in range(1000)}
    assert "▁Männer" not in {en.id_to_piece(i) for i in range(1000)}
    sent = "Zwei junge Männer spielen Fußball."
    assert de.decode(de.encode(sent)) == sent
    assert len(de.encode(sent)) < len(en.encode(sent))  # the German vocabulary fits German


def test_sentencepiece_errors():
    with pytest.raises(ValueError, match="model_type must be one of 'unigram', 'bpe'; got 'word'"):
        SentencePieceTokenizer.train(["a b c"], vocab_size=10, model_type="word")
    with pytest.raises(ValueError, match="vocab_size must be an int >= 5; got 4"):
        SentencePieceTokenizer.train(["a b c"], vocab_size=4)
    with pytest.raises(ValueError, match=r"sentencepiece training failed \(vocab_size=5000\)"):
        SentencePieceTokenizer.train(["a tiny corpus"] * 3, vocab_size=5000)


def test_load_tokenizer_rejects_unknown_type(tmp_path):
    (tmp_path / "tokenizer.json").write_text(json.dumps({"format_version": 1, "type": "bytes"}))
    with pytest.raises(ValueError, match="type must be one of .*; got 'bytes'"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text(json.dumps({"format_version": 1, "type": ["w"]}))
    with pytest.raises(ValueError, match=r"tokenizer.json: type must be one of .*; got \['w'\]"):
        load_tokenizer(tmp_path)  # a list is no name, and cannot be looked up either
    with pytest.raises(FileNotFoundError, match="not a saved tokenizer"):
        load_tokenizer(tmp_path / "nothing")


# ------------------------------------------------------------------ subword sampling
SENTENCES = ["a man in a blue shirt is riding a horse on the beach",
             "two young women are standing near a brown dog",
             "the children play football in the park at night",
             "a woman with a red hat sells fruit at the market"] * 10


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def subwords(request):
    return SentencePieceTokenizer.train(SENTENCES, vocab_size=50, model_type=request.param)


def test_sampled_segmentations_decode_to_the_text_and_vary(subwords):
    texts = SENTENCES[:4]
    fixed = [subwords.encode(t) for t in texts]
    draws = [subwords.sample(texts, alpha=0.5, seed=seed) for seed in range(5)]
    for draw in draws:
        assert [subwords.decode(ids) for ids in draw] == texts
    assert any(draw != fixed for draw in draws)  # a segmentation other than encode's
    assert len({str(draw) for draw in draws}) > 1  # and another one for another seed
    assert subwords.sample(texts, alpha=0.0, seed=3) == fixed  # 0: no sampling


def test_a_draw_is_the_same_in_every_process(subwords, tmp_path):
    """sentencepiece's own sampling is salted per process; ranks and resumed runs need
    the same draw for the same seed."""
    subwords.save(tmp_path / "tok")
    code = ("import json, sys; from attnkit.data.tokenizer import load_tokenizer; "
            f"print(json.dumps(load_tokenizer(sys.argv[1]).sample({SENTENCES[:4]!r}, "
            "alpha=0.5, seed=(7, 1, 0))))")
    there = [json.loads(subprocess.run([sys.executable, "-c", code, str(tmp_path / "tok")],
                                       check=True, capture_output=True, text=True).stdout)
             for _ in range(2)]
    subwords.sample(SENTENCES[:4], alpha=0.9, seed=8)  # other draws before
    spm.set_random_generator_seed(12345)
    here = subwords.sample(SENTENCES[:4], alpha=0.5, seed=(7, 1, 0))
    assert there[0] == there[1] == here


def test_sampled_pairs_differ_between_epochs_and_repeat_within_one(subwords):
    pairs = list(zip(SENTENCES[:8], SENTENCES[8:16]))
    sampled = SampledPairs(TokenizerPair(subwords, subwords), pairs, alpha=0.5, seed=0)
    epoch0, epoch1 = sampled(0), sampled(1)
    assert epoch0 != epoch1
    again = SampledPairs(TokenizerPair(subwords, subwords), pairs, alpha=0.5, seed=0)
    assert again(0) == epoch0 and sampled(1) == epoch1
    assert SampledPairs(TokenizerPair(subwords, subwords), pairs, alpha=0.5, seed=1)(0) \
        != epoch0
    for x, y in epoch1:
        assert (subwords.decode(x), subwords.decode(y)) in pairs
    assert repr(sampled) == "SampledPairs(alpha=0.5, seed=0)"
    # one vocabulary per language: each side drawn with its own
    other = SentencePieceTokenizer.train(SENTENCES[::-1], vocab_size=45, model_type="bpe")
    two = SampledPairs(TokenizerPair(subwords, other), pairs, alpha=0.5, seed=0)(0)
    assert [(subwords.decode(x), other.decode(y)) for x, y in two] == pairs


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), float("inf"), "0.1", None, True])
def test_a_bad_alpha_is_refused_naming_it(subwords, alpha):
    with pytest.raises((TypeError, ValueError), match=r"^alpha must be a .*number in \[0, 1\]"):
        subwords.sample(["a man"], alpha=alpha, seed=0)
    with pytest.raises((TypeError, ValueError), match=r"^alpha must be a .*number in \[0, 1\]"):
        SampledPairs(TokenizerPair(subwords, subwords), [("a", "b")], alpha=alpha, seed=0)


def test_sampling_needs_sentencepiece_tokenizers(subwords):
    chars = CharTokenizer.train(SENTENCES)
    for pair, named in [(TokenizerPair(chars, chars), "CharTokenizer"),
                        (TokenizerPair(subwords, WordTokenizer.train(SENTENCES)),
                         "WordTokenizer")]:
        with pytest.raises(ValueError, match=rf"^subword sampling needs sentencepiece "
                                             rf"tokenizers; got {named}, which"):
            SampledPairs(pair, [("a man", "a dog")], alpha=0.1, seed=0)


def test_sample_refuses_a_single_string_and_a_negative_seed(subwords):
    with pytest.raises(TypeError, match=r"^texts must be a sequence of strings, got a single "
                                        r"str$"):
        subwords.sample("a man", alpha=0.1, seed=0)  # would be drawn character by character
    with pytest.raises(ValueError, match=r"^seed must be"):
        subwords.sample(["a man"], alpha=0.1, seed=(1, -2))
