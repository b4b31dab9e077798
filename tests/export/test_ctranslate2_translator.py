"""Translating with an exported model gives what attnkit's own search gives."""

from __future__ import annotations

import pytest

from attnkit._cpu import torch_threads
from attnkit.decode.translator import load_translator

from .conftest import RUNS, SENTENCES

ctranslate2 = pytest.importorskip("ctranslate2")

from attnkit.export import export_ctranslate2, load_ctranslate2  # noqa: E402

ALL_RUNS = ["golden", *RUNS]


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    """``exported(name, quantization)``: (attnkit translator, CTranslate2 translator)."""
    cache = {}

    def get(name: str, quantization: str = "float32"):
        if (name, quantization) not in cache:
            run = trained_run(name)
            out = export_ctranslate2(run, tmp_path_factory.mktemp("ct2") / name,
                                     quantization=quantization)
            cache[name, quantization] = load_translator(run), load_ctranslate2(out, threads=1)
        return cache[name, quantization]

    return get


@pytest.fixture(autouse=True)
def _one_thread():
    """attnkit decodes on one thread, as CTranslate2 does here, so that the two engines'
    float32 rounding is the same whatever the machine's core count."""
    with torch_threads(1):
        yield


@pytest.mark.parametrize("name", ALL_RUNS)
@pytest.mark.parametrize("beam_size", [1, 2, 3, 4, 5])
def test_greedy_and_beam_outputs_are_attnkits_token_for_token(name, beam_size, exported):
    """alpha = 0: both searches keep the same beams, finish the same <eos> candidates (those
    ranked below K), count the live beams at the output limit, and stop with the same
    best hypothesis, so the outputs agree for every beam size."""
    ours, ct2 = exported(name)
    want = ours.translate(SENTENCES, beam_size=beam_size, alpha=0.0)
    assert ct2.translate(SENTENCES, beam_size=beam_size, alpha=0.0) == want
    assert want[SENTENCES.index("")] == ""


@pytest.mark.parametrize("name", ALL_RUNS)
def test_an_output_limit_is_attnkits(name, exported):
    ours, ct2 = exported(name)
    for beam_size in (1, 3):
        want = ours.translate(SENTENCES, beam_size=beam_size, max_output_len=2, alpha=0.0)
        assert ct2.translate(SENTENCES, beam_size=beam_size, max_output_len=2, alpha=0.0) == want


@pytest.mark.parametrize("name", ALL_RUNS)
def test_beam_search_with_a_length_penalty_is_attnkits_token_for_token(name, exported):
    """GNMT alpha > 0, applied to CTranslate2's K best hypotheses by log-probability: with
    attnkit's default stop rule (``best_ended``, CTranslate2's) both searches keep the
    same beams, finish the same hypotheses and stop at the same step, so the outputs
    agree; and CTranslate2 refuses the ``exact`` rule it has not got, naming it."""
    ours, ct2 = exported(name)
    want = ours.translate(SENTENCES, beam_size=4, alpha=0.6)
    assert ct2.translate(SENTENCES, beam_size=4, alpha=0.6) == want
    with pytest.raises(ValueError, match=r"stop must be 'best_ended' with --engine "
                                         r"ctranslate2 .*; got 'exact'"):
        ct2.translate(SENTENCES, beam_size=4, alpha=0.6, stop="exact")


@pytest.mark.parametrize("name", ALL_RUNS)
def test_the_exact_stop_finds_a_hypothesis_at_least_as_good_as_ctranslate2s(name, exported):
    """attnkit's ``stop="exact"`` goes on as long as a longer hypothesis could still win
    under the penalty. Up to CTranslate2's stop both keep the same beams and finish the
    same hypotheses, so attnkit's choice scores at least as high under the penalty as
    CTranslate2's, whatever the weights: where the outputs differ, attnkit found a better
    one (scored here by attnkit's model, teacher-forced)."""
    ours, ct2 = exported(name)
    want = ours.translate(SENTENCES, beam_size=4, alpha=0.6, stop="exact")
    got = ct2.translate(SENTENCES, beam_size=4, alpha=0.6)
    assert len(got) == len(want) and got[SENTENCES.index("")] == ""
    best = ours.translate_n_best(SENTENCES, n_best=1, beam_size=4, alpha=0.6, stop="exact")
    for src, w, nb in zip(SENTENCES, want, best):  # the scorer is the search's own
        if src:
            assert nb[0][0] == w and _gnmt_score(ours, src, w, 0.6) == \
                pytest.approx(nb[0][1], abs=1e-4), (src, w, nb)
    for src, w, g in zip(SENTENCES, want, got):
        if g != w:
            assert _gnmt_score(ours, src, w, 0.6) >= _gnmt_score(ours, src, g, 0.6) - 1e-4, \
                (src, w, g)


def _gnmt_score(translator, src: str, out: str, alpha: float) -> float:
    """``log P(out | src) / length_penalty`` by ``translator``'s model, as its beam search
    ranks a hypothesis (``<eos>`` counted; an output as long as the sentence's output limit,
    ``2·S + 10`` or what the positional table holds, is one cut there, without ``<eos>``)."""
    import torch

    from attnkit.data.batching import collate
    from attnkit.decode.search import length_penalty
    from attnkit.decode.translator import output_limit, positions_of

    tok, positions = translator.tokenizers, positions_of(translator.run.model)
    src_ids, out_ids = tok.src.encode(src), tok.tgt.encode(out)
    if positions is not None:
        src_ids = src_ids[: positions - 1]  # room for <eos>, as translation cuts it
    cut = len(out_ids) >= output_limit(len(src_ids) + 1, None, positions)
    b = collate([(src_ids, out_ids)], [0])
    with torch.no_grad():
        logits = translator.model.eval()(b.src, b.tgt_in, b.src_valid_lens,
                                         b.tgt_valid_lens)  # (1, T, V)
    logp = torch.log_softmax(logits.float(), -1)[0].gather(1, b.tgt_out[0, :, None])[:, 0]
    terms = logp[: len(out_ids)] if cut else logp  # (|y|,) or (|y| + 1,) with <eos>
    return float(terms.sum()) / length_penalty(len(terms), alpha)


def test_int8_runs_and_mostly_agrees(exported):
    ours, _ = exported("golden")
    _, int8 = exported("golden", "int8")
    assert int8.info["quantization"] == "int8"
    want = ours.translate(SENTENCES, beam_size=1)
    got = int8.translate(SENTENCES, beam_size=1)
    assert len(got) == len(SENTENCES) and got[SENTENCES.index("")] == ""
    same = sum(g == w for g, w in zip(got, want))
    assert same >= 0.75 * len(SENTENCES), list(zip(SENTENCES, want, got))


def test_sentences_too_long_for_the_table_are_cut_and_named_like_attnkits(exported):
    ours, ct2 = exported("golden")  # 16 positions
    assert ct2.overlong(SENTENCES) == ours.overlong(SENTENCES) == [SENTENCES.index(
        "1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6")]


def test_progress_counts_every_decoded_sentence_and_order_is_kept(exported):
    ours, ct2 = exported("golden")
    seen = []
    got = ct2.translate(SENTENCES, progress=seen.append)
    assert sum(seen) == sum(1 for s in SENTENCES if s.strip())
    assert got == ours.translate(SENTENCES)  # default alpha, greedy
    assert [ct2.translate([s])[0] for s in SENTENCES[:3]] == got[:3]


def test_the_translate_command_decodes_with_the_exported_model(trained_run, tmp_path, capsys):
    from attnkit.cli import main

    run = trained_run("golden")
    out = export_ctranslate2(run, tmp_path / "ct2")
    argv = ["translate", "--engine", "ctranslate2", "--model", str(out), "--beam-size", "1"]
    assert main([*argv, "3 1 4", "7 7"]) == 0
    assert capsys.readouterr().out.splitlines() == load_translator(run).translate(
        ["3 1 4", "7 7"], beam_size=1)
    assert main(["translate", "--engine", "ctranslate2", "3"]) == 2
    assert "--engine ctranslate2 needs --model DIR" in capsys.readouterr().err
    assert main(["translate", "--engine", "ctranslate2", "--model", str(tmp_path), "3"]) == 2
    assert "is not a directory written by 'attnkit export ctranslate2'" in \
        capsys.readouterr().err
    assert main(["translate", "3"]) == 2
    assert "--checkpoint is required" in capsys.readouterr().err


def test_both_loaded_translators_are_sentence_translators(exported):
    """What the commands ask of a translator (SentenceTranslator), both engines answer:
    CTranslate2's gives no n-best lists and holds its own memory."""
    from attnkit.decode.protocols import SentenceTranslator

    ours, theirs = exported("golden")
    assert isinstance(ours, SentenceTranslator) and isinstance(theirs, SentenceTranslator)
    assert ours.supports_n_best and not theirs.supports_n_best
    assert ours.memory_config is not None and theirs.memory_config is None


@pytest.mark.parametrize("name", ["golden", "rope_mqa"])
@pytest.mark.parametrize("rules", [dict(no_repeat_ngram=1), dict(no_repeat_ngram=2),
                                   dict(repetition_penalty=1.5),
                                   dict(repetition_penalty=0.6, no_repeat_ngram=2)])
def test_the_search_constraints_are_attnkits_token_for_token(name, rules, exported):
    """``no_repeat_ngram`` and ``repetition_penalty`` are CTranslate2's
    ``no_repeat_ngram_size`` and ``repetition_penalty``: the same outputs, greedy and beam,
    and not those without them."""
    ours, ct2 = exported(name)
    changed = False
    for beam_size in (1, 4):
        want = ours.translate(SENTENCES, beam_size=beam_size, alpha=0.0, **rules)
        assert ct2.translate(SENTENCES, beam_size=beam_size, alpha=0.0, **rules) == want
        changed |= want != ours.translate(SENTENCES, beam_size=beam_size, alpha=0.0)
    assert changed
