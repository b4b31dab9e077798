"""The translator of a run: n-best lists that start with its translation, and n_best beyond
the beam refused. Oracle: the golden checkpoint (digits -> English words)."""

from pathlib import Path

import pytest

from attnkit.decode.translator import load_translator

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "run-format-2"
SENTENCES = ["3 1 4", "1 5 9 2", "", "6", "2 7 1 8 2 8"]


@pytest.fixture(scope="module")
def golden():
    return load_translator(GOLDEN)


@pytest.mark.parametrize("n_best, beam_size", [(4, 4), (2, 5), (1, 1)])
def test_translator_n_best_starts_with_the_translation(golden, n_best, beam_size):
    plain = golden.translate(SENTENCES, beam_size=beam_size)
    found = golden.translate_n_best(SENTENCES, n_best=n_best, beam_size=beam_size)
    assert len(found) == len(SENTENCES)
    for sentence, text, hyps in zip(SENTENCES, plain, found, strict=True):
        if not sentence:
            assert hyps == [("", 0.0)]  # blank in, one blank hypothesis out
            continue
        assert len(hyps) == n_best and hyps[0][0] == text
        assert len({t for t, _ in hyps}) == n_best  # distinct
        scores = [s for _, s in hyps]
        assert scores == sorted(scores, reverse=True) and all(s < 0 for s in scores)


def test_translator_refuses_more_than_the_beam(golden):
    with pytest.raises(ValueError, match=r"got n_best=3, beam_size=2"):
        golden.translate_n_best(["3 1"], n_best=3, beam_size=2)


def test_golden_run_decodes_300_sentences_as_recorded(golden):
    """Greedy and beam-5 outputs of 300 sources, byte for byte as recorded by
    tests/golden/make_golden.py (decoded_outputs): a change of the decoding step may
    not change a translation."""
    import json

    want = json.loads(GOLDEN.with_name("run-format-2.decoded.json").read_text(encoding="utf-8"))
    assert golden.translate(want["sentences"], beam_size=1) == want["beam1"]
    assert golden.translate(want["sentences"], beam_size=5) == want["beam5"]
