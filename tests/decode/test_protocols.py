"""The decoding protocols: both models decode step by step, both translators translate
sentences, a model without the step methods is refused up front naming what it lacks, and
the commands decide by the translators' capabilities."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from attnkit.commands._decoding import check_decoding_memory
from attnkit.commands.translate import ENGINES, check_n_best_flags, engine_class
from attnkit.data.tokenizer import TokenizerPair
from attnkit.decode.protocols import STEP_METHODS, SentenceTranslator, StepDecoder
from attnkit.decode.search import beam_search, greedy_hypotheses, greedy_search, n_best_search
from attnkit.decode.translator import Translator, load_translator
from attnkit.export.ctranslate2_translator import CTranslate2Translator
from attnkit.models import build_model
from attnkit.models.config import BahdanauConfig, TransformerConfig

from .test_search import BOS, EOS, MarkovModel

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "run-format-2"


@pytest.fixture(scope="module")
def golden():
    return load_translator(GOLDEN)


@pytest.mark.parametrize("config", [
    TransformerConfig(src_vocab_size=11, tgt_vocab_size=13, num_hiddens=8, num_heads=2,
                      ffn_num_hiddens=16, num_encoder_layers=1, num_decoder_layers=1,
                      dropout=0.0, max_len=16),
    BahdanauConfig(src_vocab_size=11, tgt_vocab_size=13, embed_size=8, num_hiddens=8,
                   num_encoder_layers=1, num_decoder_layers=1, dropout=0.0),
], ids=["transformer", "bahdanau"])
def test_both_models_decode_step_by_step(config):
    model = build_model(config).eval()
    assert isinstance(model, StepDecoder)
    out = greedy_search(model, torch.tensor([[4, 5, EOS]]), torch.tensor([3]), bos_id=BOS,
                        eos_id=EOS, max_output_len=3)
    assert len(out) == 1 and len(out[0]) <= 3


def test_both_translators_translate_sentences(golden):
    ct2 = CTranslate2Translator(GOLDEN, {"positions": 16}, TokenizerPair.load(
        golden.run.tokenizer_dir), engine=None)  # the engine is not needed to be one
    for translator, n_best in ((golden, True), (ct2, False)):
        assert isinstance(translator, SentenceTranslator)
        assert translator.supports_n_best is n_best
        assert type(translator).supports_n_best is n_best  # asked before loading a model
    assert golden.memory_config is golden.run.model and ct2.memory_config is None
    assert golden.positions == ct2.positions == 16  # both cut sources to the same table
    assert Translator(golden.model, golden.tokenizers).memory_config is None
    assert {engine_class(name) for name in ENGINES} == {Translator, CTranslate2Translator}
    import attnkit.decode

    assert (attnkit.decode.SentenceTranslator, attnkit.decode.StepDecoder) == (
        SentenceTranslator, StepDecoder)  # the package names them too


class _NoDecodeStep(MarkovModel):
    decode_step = None  # an attribute, but not a method


class _NoSteps(torch.nn.Module):
    def forward(self, src, tgt_in, src_valid_lens=None):
        raise AssertionError("never called")


@pytest.mark.parametrize("search", [
    lambda m, src: greedy_search(m, src, None, bos_id=BOS, eos_id=EOS),
    lambda m, src: greedy_hypotheses(m, src, None, bos_id=BOS, eos_id=EOS),
    lambda m, src: beam_search(m, src, None, bos_id=BOS, eos_id=EOS, beam_size=2),
    lambda m, src: n_best_search(m, src, None, bos_id=BOS, eos_id=EOS, n_best=2, beam_size=2),
], ids=["greedy", "greedy_hypotheses", "beam", "n_best"])
def test_a_model_without_the_step_methods_is_refused_naming_them(search):
    src = torch.zeros(2, 1, dtype=torch.long)
    with pytest.raises(TypeError, match=r"model must decode step by step \(encode, "
                                        r"init_state, decode_step, reorder_state; .*\); "
                                        r"_NoDecodeStep has no decode_step$"):
        search(_NoDecodeStep(2), src)
    with pytest.raises(TypeError, match="_NoSteps has no " + ", ".join(STEP_METHODS) + "$"):
        search(_NoSteps(), src)
    with pytest.raises(TypeError, match="has no decode_step"):  # even with an empty batch
        search(_NoDecodeStep(2), torch.zeros(0, 1, dtype=torch.long))


def test_n_best_is_refused_for_an_engine_without_it_with_todays_message(monkeypatch):
    args = argparse.Namespace(n_best=2, beam_size=4, engine="ctranslate2")
    with pytest.raises(ValueError, match=r"^--n-best is not available with --engine "
                                         r"ctranslate2, whose beam keeps other hypotheses "
                                         r"than attnkit's; use --engine attnkit "
                                         r"--checkpoint RUN$"):
        check_n_best_flags(args)
    check_n_best_flags(argparse.Namespace(n_best=2, beam_size=4, engine="attnkit"))
    # the capability decides, not the name
    monkeypatch.setattr(CTranslate2Translator, "supports_n_best", True)
    check_n_best_flags(args)


def test_the_memory_check_runs_for_a_search_in_this_process_only(golden, monkeypatch):
    """attnkit's search is refused a beam whose state cannot fit (today's message); a
    translator with no ``memory_config`` (an engine holding its own memory) is not
    checked."""
    from attnkit import _memory

    monkeypatch.setattr(_memory, "available_memory",
                        lambda: _memory.Budget(1, "a test budget"))
    args = argparse.Namespace(beam_size=64, max_output_len=10_000)
    with pytest.raises(MemoryError, match=r"^--beam-size 64 x 3 sentences at a time x "
                                          r"--max-output-len 10000: decoding needs about "):
        check_decoding_memory(args, golden, 3)

    class OwnMemory:
        memory_config = None

    check_decoding_memory(args, OwnMemory(), 3)
