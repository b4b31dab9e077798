"""Tests for attnkit.data.corpus: readers, problem reports, normalization, splits."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from attnkit.data.corpus import (
    load_multi30k,
    normalize_whitespace,
    read_aligned_files,
    read_tsv_pairs,
    split_pairs,
)

from .._data import MULTI30K, TATOEBA, needs_multi30k, needs_tatoeba


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  a  b  ", "a b"),
        ("Va\u202f!", "Va !"),  # narrow no-break space before French punctuation
        ("x\xa0\xa0y", "x y"),  # no-break spaces collapse
        ("a\u2009b\tc", "a b c"),  # thin space and tab
        ("\ufeffHello", "Hello"),  # byte-order mark
        ("", ""),
        ("   ", ""),
        ("Straße", "Straße"),  # letters are never touched
    ],
)
def test_normalize_whitespace(raw, expected):
    assert normalize_whitespace(raw) == expected


def test_every_unicode_space_separator_becomes_a_space():
    spaces = [chr(i) for i in range(0x110000) if unicodedata.category(chr(i)) == "Zs"]
    assert len(spaces) == 17
    for sp in spaces:
        assert normalize_whitespace(f"a{sp}{sp}b{sp}") == "a b"
    assert normalize_whitespace("a\u200bb") == "a\u200bb"  # zero-width space is not a space


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_tsv_counts_every_problem_with_line_numbers(tmp_path):
    data = b"".join(
        [
            b"\xef\xbb\xbfGo.\tVa\xe2\x80\xaf!\tCC-BY attribution\n",  # 1 ok, BOM, NNBSP
            b"no tab here\n",  # 2 missing_column
            b"\tempty source\n",  # 3 empty_source
            b"empty target\t  \n",  # 4 empty_target
            b"bad \xff byte\tx\n",  # 5 invalid_utf8
            b"\n",  # 6 blank_line
            b"Hi.\tSalut.\r\n",  # 7 ok, CRLF
            b"  Run!  \t\xc2\xa0Cours\xc2\xa0!\n",  # 8 ok, NBSP
            b"Last.\tDernier.",  # 9 ok, no final newline
        ]
    )
    corpus = read_tsv_pairs(_write(tmp_path, "fra.txt", data))
    assert corpus.pairs == [
        ("Go.", "Va !"),
        ("Hi.", "Salut."),
        ("Run!", "Cours !"),
        ("Last.", "Dernier."),
    ]
    rep = corpus.report
    assert rep.lines_read == 9 and rep.pairs_kept == 4 and rep.num_problems == 5
    assert rep.problems == {
        "missing_column": 1,
        "empty_source": 1,
        "empty_target": 1,
        "invalid_utf8": 1,
        "blank_line": 1,
    }
    assert rep.examples == {
        "missing_column": [2],
        "empty_source": [3],
        "empty_target": [4],
        "invalid_utf8": [5],
        "blank_line": [6],
    }
    summary = rep.summary()
    assert "read 9 lines, kept 4 pairs, skipped 5" in summary
    assert "invalid_utf8: 1 (lines 5)" in summary


def test_tsv_keeps_first_five_line_numbers_but_counts_all(tmp_path):
    lines = [b"bad\n"] * 8 + [b"a\tb\n"]
    rep = read_tsv_pairs(_write(tmp_path, "x.tsv", b"".join(lines))).report
    assert rep.problems == {"missing_column": 8}
    assert rep.examples["missing_column"] == [1, 2, 3, 4, 5]
    assert "missing_column: 8 (lines 1, 2, 3, 4, 5 ...)" in rep.summary()


def test_tsv_columns_and_max_pairs(tmp_path):
    p = _write(tmp_path, "x.tsv", b"a\tA\t1\nb\tB\t2\nc\tC\t3\n")
    assert read_tsv_pairs(p, src_col=1, tgt_col=0).pairs == [("A", "a"), ("B", "b"), ("C", "c")]
    assert read_tsv_pairs(p, src_col=2, tgt_col=0).pairs[0] == ("1", "a")
    limited = read_tsv_pairs(p, max_pairs=2)
    assert limited.pairs == [("a", "A"), ("b", "B")] and limited.report.lines_read == 2
    with pytest.raises(ValueError, match="src_col and tgt_col must differ"):
        read_tsv_pairs(p, src_col=1, tgt_col=1)
    with pytest.raises(ValueError, match="max_pairs must be a non-negative int; got -1"):
        read_tsv_pairs(p, max_pairs=-1)
    with pytest.raises(FileNotFoundError, match="path: no such file"):
        read_tsv_pairs(tmp_path / "missing.tsv")


def test_aligned_files_problems(tmp_path):
    src = _write(tmp_path, "a.en", b"one\n\ntwo  words\nbad\xc3\n five \n")
    tgt = _write(tmp_path, "a.de", b"eins\nleer\nzwei\xc2\xa0Worte\nschlecht\n\n")
    corpus = read_aligned_files(src, tgt)
    assert corpus.pairs == [("one", "eins"), ("two words", "zwei Worte")]
    assert corpus.report.problems == {"empty_source": 1, "invalid_utf8": 1, "empty_target": 1}
    assert corpus.report.examples == {
        "empty_source": [2],
        "invalid_utf8": [4],
        "empty_target": [5],
    }
    assert corpus.sources == ["one", "two words"] and corpus.targets == ["eins", "zwei Worte"]


def test_aligned_files_length_mismatch_names_both(tmp_path):
    src = _write(tmp_path, "s.txt", b"a\nb\nc\n")
    tgt = _write(tmp_path, "t.txt", b"a\nb\n")
    with pytest.raises(ValueError) as err:
        read_aligned_files(src, tgt)
    msg = str(err.value)
    assert f"{src} has 3 lines" in msg and f"{tgt} has 2 lines" in msg


def test_split_pairs_is_deterministic_partition():
    pairs = [(f"s{i}", f"t{i}") for i in range(101)]
    train, valid = split_pairs(pairs, valid_fraction=0.2, seed=7)
    assert len(valid) == 20 and len(train) == 81
    assert sorted(train + valid) == sorted(pairs)  # a partition
    # order inside each part is the corpus order
    assert train == sorted(train, key=pairs.index) and valid == sorted(valid, key=pairs.index)
    assert split_pairs(pairs, valid_fraction=0.2, seed=7) == (train, valid)
    assert split_pairs(pairs, valid_fraction=0.2, seed=8)[1] != valid
    assert split_pairs(pairs, valid_fraction=0.0, seed=0) == (pairs, [])
    with pytest.raises(ValueError, match=r"valid_fraction must be a number in \[0, 1\]; got 1.5"):
        split_pairs(pairs, valid_fraction=1.5, seed=0)


@needs_tatoeba
def test_real_tatoeba_sample():
    raw_lines = TATOEBA.read_bytes().decode("utf-8").splitlines()
    corpus = read_tsv_pairs(TATOEBA)
    assert corpus.report.lines_read == 5000 and corpus.report.pairs_kept == 5000
    assert corpus.report.problems == {}
    assert corpus.pairs[0] == ("Go.", "Va !")
    assert corpus.pairs[3] == ("Hi.", "Salut !")
    # the file uses narrow no-break spaces; none survive normalization
    assert sum("\u202f" in line for line in raw_lines) > 100
    for src, tgt in corpus.pairs:
        for text in (src, tgt):
            assert "  " not in text and text == text.strip()
            assert all(unicodedata.category(c) != "Zs" or c == " " for c in text)
    # the attribution column is never read as a sentence
    assert not any("tatoeba.org" in t for _, t in corpus.pairs)
    # the reverse direction by column choice
    assert read_tsv_pairs(TATOEBA, src_col=1, tgt_col=0, max_pairs=1).pairs == [("Va !", "Go.")]


@needs_multi30k
def test_real_multi30k_splits():
    train = load_multi30k(MULTI30K, "train", "en", "de")
    assert len(train) == 29000 and train.report.problems == {}
    assert train.pairs[0] == (
        "Two young, White males are outside near many bushes.",
        "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche.",
    )
    assert len(load_multi30k(MULTI30K, "val", "fr", "en")) == 1014
    test = load_multi30k(MULTI30K, "test_2016_flickr", "de", "en", tokenized=True)
    assert len(test) == 1000
    assert test.pairs[0] == (
        "ein mann mit einem orangefarbenen hut , der etwas anstarrt .",
        "a man in an orange hat starring at something .",
    )


@needs_multi30k
def test_real_multi30k_misaligned_files_raise():
    with pytest.raises(ValueError, match=r"has 29000 lines.*has 1014 lines"):
        read_aligned_files(MULTI30K / "raw" / "train.en", MULTI30K / "raw" / "val.de")


def test_load_multi30k_validates_arguments(tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        load_multi30k(tmp_path, "dev", "en", "de")
    with pytest.raises(ValueError, match="tgt_lang must be one of .* got 'cs'"):
        load_multi30k(tmp_path, "train", "en", "cs")
    with pytest.raises(ValueError, match="src_lang and tgt_lang must differ"):
        load_multi30k(tmp_path, "train", "en", "en")
    with pytest.raises(FileNotFoundError, match="train.en"):
        load_multi30k(tmp_path, "train", "en", "de")
