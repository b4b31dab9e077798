"""Export to CTranslate2: the directory, the vocabularies, the weights (checked through the
log-probabilities CTranslate2 computes), what is refused, and the command line."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys

import pytest
import torch

from attnkit.cli import main
from attnkit.data.tokenizer import BOS_ID, EOS_ID, SPECIAL_TOKENS
from attnkit.decode.translator import load_translator
from attnkit.export.ctranslate2 import (
    EXPORT_INFO,
    MANIFEST,
    check_exportable,
    export_ctranslate2,
)
from attnkit.models.config import bahdanau_small, transformer_tiny
from attnkit.models.family import model_config_to_dict
from attnkit.models.rnn_dot import rnn_dot_small

from ..runs._edit import edit_config
from .conftest import RUNS

needs_ct2 = pytest.mark.skipif(importlib.util.find_spec("ctranslate2") is None,
                               reason="ctranslate2 is not installed (attnkit[deploy])")
ALL_RUNS = ["golden", *RUNS]


@needs_ct2
def test_the_directory_holds_model_vocabulary_tokenizer_and_record(trained_run, tmp_path):
    out = export_ctranslate2(trained_run("golden"), tmp_path / "ct2")
    names = {p.name for p in out.iterdir()}
    assert names == {"model.bin", "config.json", "shared_vocabulary.json", "tokenizer",
                     EXPORT_INFO, MANIFEST}
    tr = load_translator(trained_run("golden"))
    vocab = json.loads((out / "shared_vocabulary.json").read_text())
    assert vocab == tr.tokenizers.src.idx_to_token  # id i in attnkit is token i here
    assert vocab[:4] == list(SPECIAL_TOKENS)
    config = json.loads((out / "config.json").read_text())
    assert (config["decoder_start_token"], config["eos_token"]) == ("<bos>", "<eos>")
    assert config["add_source_eos"] and not config["add_source_bos"]
    assert config["layer_norm_epsilon"] == pytest.approx(1e-5)
    info = json.loads((out / EXPORT_INFO).read_text())
    assert info["positions"] == 16 and info["quantization"] == "float32"
    assert info["model"]["class"] == "TransformerConfig"
    assert (out / "tokenizer" / "tokenizer.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers


@needs_ct2
def test_separate_vocabularies_are_written_apart(trained_run, tmp_path):
    run = trained_run("pre_ln_separate_untied")
    out = export_ctranslate2(run, tmp_path / "ct2")
    tr = load_translator(run)
    assert not tr.tokenizers.shared
    src = json.loads((out / "source_vocabulary.json").read_text())
    tgt = json.loads((out / "target_vocabulary.json").read_text())
    assert src == tr.tokenizers.src.idx_to_token and tgt == tr.tokenizers.tgt.idx_to_token
    assert (out / "tokenizer" / "tgt" / "tokenizer.json").is_file()


def _attnkit_log_probs(tr, src_ids, tgt_ids) -> list[float]:
    """log P of each target id and the final <eos>, teacher-forced by attnkit's model."""
    src = torch.tensor([src_ids + [EOS_ID]])
    tgt_in = torch.tensor([[BOS_ID] + tgt_ids])
    with torch.no_grad():
        logp = torch.log_softmax(tr.model(src, tgt_in, torch.tensor([src.shape[1]])), -1)[0]
    gold = tgt_ids + [EOS_ID]
    return [float(logp[t, i]) for t, i in enumerate(gold)]


@needs_ct2
@pytest.mark.parametrize("name", ALL_RUNS)
def test_ctranslate2_computes_attnkits_log_probabilities(name, trained_run, tmp_path):
    """The oracle of the weight mapping: every token's log-probability, teacher-forced,
    equals attnkit's to float32 rounding (post/pre-LN, shared/separate, tied/untied,
    learned positions, gelu, unscaled dot, no biases, rope, multi-query)."""
    import ctranslate2

    run = trained_run(name)
    out = export_ctranslate2(run, tmp_path / "ct2")
    tr = load_translator(run)
    engine = ctranslate2.Translator(str(out), device="cpu")
    pairs = [("3 1 4", "three one four"), ("9 0 2 7", "nine zero two seven"),
             ("5", "five five five"), ("8 8 x", "eight")]
    for src, tgt in pairs:
        s_ids, t_ids = tr.tokenizers.src.encode(src), tr.tokenizers.tgt.encode(tgt)
        got = engine.score_batch([[_piece(tr.tokenizers.src, i) for i in s_ids]],
                                 [[_piece(tr.tokenizers.tgt, i) for i in t_ids]])[0]
        assert got.log_probs == pytest.approx(_attnkit_log_probs(tr, s_ids, t_ids), abs=2e-4)


def _piece(tokenizer, i: int) -> str:
    return tokenizer.idx_to_token[i]


@pytest.mark.parametrize("option,message", [
    (dict(positional="alibi"), "cannot export model option positional='alibi' to CTranslate2"),
    (dict(score="additive"), "cannot export model option score='additive'"),
    (dict(score="distance"), "cannot export model option score='distance'"),
    (dict(score="bilinear"), "cannot export model option score='bilinear'"),
])
def test_what_ctranslate2_cannot_represent_is_refused_naming_the_option(option, message):
    with pytest.raises(ValueError, match=message):
        check_exportable(transformer_tiny(12, **option))


def test_the_bahdanau_rnn_is_refused():
    with pytest.raises(ValueError, match="cannot export a BahdanauConfig model to CTranslate2"):
        check_exportable(bahdanau_small(12))


@pytest.mark.parametrize("builder, said", [
    (bahdanau_small, "a BahdanauConfig model to CTranslate2: the Bahdanau RNN has"),
    (rnn_dot_small, "a RNNDotConfig model to CTranslate2: the RNN with dot-product attention "
                    "has"),
])
def test_a_family_without_a_spec_is_refused_whether_or_not_ctranslate2_is_installed(
        trained_run, tmp_path, capsys, monkeypatch, builder, said):
    """Installing ctranslate2 would not help: the refusal comes first, in one line."""
    run = shutil.copytree(trained_run("golden"), tmp_path / "rnn")
    edit_config(run, lambda meta: meta.update(model=model_config_to_dict(builder(
        meta["model"]["src_vocab_size"]))))
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # import ctranslate2 fails
    code = main(["export", "ctranslate2", "--checkpoint", str(run), "--out",
                 str(tmp_path / "ct2")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.strip() == (f"attnkit export ctranslate2: error: cannot export {said} no "
                           "CTranslate2 spec (only the Transformer has)")
    assert not (tmp_path / "ct2").exists()


@needs_ct2
def test_a_refused_run_fails_in_one_line_before_anything_is_written(trained_run, tmp_path,
                                                                    capsys):
    run = trained_run("golden")
    edit_config(run, lambda meta: meta["model"].update(positional="alibi"))
    try:
        code = main(["export", "ctranslate2", "--checkpoint", str(run), "--out",
                     str(tmp_path / "ct2")])
    finally:
        edit_config(run, lambda meta: meta["model"].update(positional="sinusoidal"))
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("attnkit export ctranslate2: error: cannot export model option "
                          "positional='alibi'")
    assert not (tmp_path / "ct2").exists()


def test_without_ctranslate2_both_paths_say_how_to_install_it(monkeypatch, tmp_path, capsys,
                                                               trained_run):
    from attnkit.export import load_ctranslate2

    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # import ctranslate2 fails
    code = main(["export", "ctranslate2", "--checkpoint", str(trained_run("golden")), "--out",
                 str(tmp_path / "ct2")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert 'pip install "attnkit[deploy]"' in err
    with pytest.raises(OSError, match=r'reading a CTranslate2 export needs the ctranslate2 '
                                      r'package, which is not installed: '
                                      r'pip install "attnkit\[deploy\]"'):
        load_ctranslate2(tmp_path)


@needs_ct2
def test_the_command_line_exports_and_replaces_only_an_earlier_export(trained_run, tmp_path,
                                                                      capsys):
    run, out = str(trained_run("golden")), tmp_path / "ct2"
    assert main(["export", "ctranslate2", "--checkpoint", run, "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"exported {run} -> {out} (ctranslate2, float32, ")
    assert main(["export", "ctranslate2", "--checkpoint", run, "--out", str(out)]) == 2
    assert "holds an earlier export; pass --force" in capsys.readouterr().err
    assert main(["export", "ctranslate2", "--checkpoint", run, "--out", str(out), "--force",
                 "--quantization", "int8"]) == 0
    assert json.loads((out / EXPORT_INFO).read_text())["quantization"] == "int8"
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["export", "ctranslate2", "--checkpoint", run, "--out", str(other),
                 "--force"]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "mine"


def test_a_sentencepiece_vocabulary_keeps_its_ids():
    from attnkit.data.tokenizer import SentencePieceTokenizer
    from attnkit.export.ctranslate2 import vocabulary

    texts = [f"{a} {b} {a}{b}" for a in ("one", "two", "three") for b in ("four", "five")]
    sp = SentencePieceTokenizer.train(texts * 5, vocab_size=20)
    tokens = vocabulary(sp)
    assert tokens[:4] == list(SPECIAL_TOKENS) and len(set(tokens)) == sp.vocab_size == 20
    assert [tokens.index(p) for p in sp.encode_pieces("one five")] == sp.encode("one five")
