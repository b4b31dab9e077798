"""The run format: a checked-in golden checkpoint, format versions, the model section."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from attnkit.decode.translator import load_translator
from attnkit.models import TransformerConfig, model_config_to_dict
from attnkit.runs import RUN_FORMAT_VERSION, open_run

from ._edit import edit_config

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
FORMAT_2 = GOLDEN / "run-format-2"
EXPECTED = json.loads((GOLDEN / "run-format-2.expected.json").read_text(encoding="utf-8"))


def outputs(path) -> dict:
    tr = load_translator(path)
    src = torch.tensor([[5, 9, 12, 3], [7, 7, 3, 0]])
    tgt = torch.tensor([[2, 6, 8], [2, 10, 0]])
    with torch.no_grad():
        logits = tr.model(src, tgt, torch.tensor([4, 3]), torch.tensor([3, 2]))
    return {"greedy": tr.translate(EXPECTED["sentences"], beam_size=1),
            "beam3": tr.translate(EXPECTED["sentences"], beam_size=3), "logits": logits}


def assert_same_as_recorded(got: dict) -> None:
    assert got["greedy"] == EXPECTED["greedy"]
    assert got["beam3"] == EXPECTED["beam3"]
    # recorded to 6 decimals; float32 forward passes agree far closer than 1e-5
    torch.testing.assert_close(got["logits"], torch.tensor(EXPECTED["logits"]), rtol=0,
                               atol=1e-5)


@pytest.fixture
def golden(tmp_path):
    return Path(shutil.copytree(FORMAT_2, tmp_path / "golden"))


def test_golden_checkpoint_is_small_and_self_describing():
    size = sum(f.stat().st_size for f in FORMAT_2.rglob("*") if f.is_file())
    assert size < 80_000, size
    meta = json.loads((FORMAT_2 / "config.json").read_text())
    assert meta["format_version"] == RUN_FORMAT_VERSION == 2
    assert set(meta) >= {"model", "tokenizer", "train"}
    fields = set(TransformerConfig.__dataclass_fields__)
    assert meta["model"]["class"] == "TransformerConfig" and set(meta["model"]) == fields | {
        "class"}
    assert meta["tokenizer"]["kind"] == "word" and meta["tokenizer"]["shared"] is True
    assert EXPECTED["greedy"][0] != EXPECTED["greedy"][2]  # outputs depend on the input


def test_golden_checkpoint_loads_and_translates_as_recorded():
    assert_same_as_recorded(outputs(FORMAT_2))
    run = open_run(FORMAT_2)
    assert run.format_version == 2 and isinstance(run.model, TransformerConfig)
    assert model_config_to_dict(run.model) == json.loads(
        (FORMAT_2 / "config.json").read_text())["model"]


def test_inference_reads_the_model_section_only(golden):
    def scramble_train(meta):
        meta["train"]["model"] = {"preset": "transformer_base", "num_heads": 4,
                                  "activation": "gelu", "positional": "rope"}
        meta["train"]["tokenizer"]["kind"] = "char"

    edit_config(golden, scramble_train)
    assert_same_as_recorded(outputs(golden))


def test_model_section_drives_the_rebuild(golden):
    def gelu(meta):
        meta["model"]["activation"] = "gelu"  # same shapes, another computation

    edit_config(golden, gelu)
    tr = load_translator(golden)
    assert isinstance(tr.model.decoder.blocks[0].ffn.activation, torch.nn.GELU)


def test_format_1_checkpoint_still_loads(golden):
    def to_format_1(meta):
        model = {k: v for k, v in meta["model"].items() if k != "class"}
        return {"train": {"tokenizer": "word", "model": "transformer_tiny", "max_len": 12},
                "model_class": "transformer_tiny", "model": model}

    edit_config(golden, to_format_1)
    run = open_run(golden)
    assert run.format_version == 1 and run.train is None
    assert_same_as_recorded(outputs(golden))


def test_newer_or_unknown_format_fails_naming_both_versions(golden):
    edit_config(golden, lambda meta: meta.update(format_version=3))
    with pytest.raises(ValueError, match=r"run format_version 3 cannot be read by this attnkit, "
                                         r"which reads run format_version 2 .*newer attnkit"):
        open_run(golden)
    edit_config(golden, lambda meta: meta.update(format_version="x"))
    with pytest.raises(ValueError, match=r"run format_version 'x' cannot be read"):
        load_translator(golden)


def test_model_section_with_missing_or_unknown_fields_is_refused(golden):
    edit_config(golden, lambda meta: meta["model"].pop("activation"))
    with pytest.raises(ValueError, match=r"model: fields of TransformerConfig missing "
                                         r"\['activation'\], unknown \[\]"):
        open_run(golden)
    edit_config(golden, lambda meta: meta["model"].update(activation="relu", norm="rms"))
    with pytest.raises(ValueError, match=r"unknown \['norm'\]"):
        open_run(golden)


@pytest.mark.parametrize("change, message", [
    (dict(activation="swish"), r"TransformerConfig.activation must be one of 'relu', 'gelu'; "
                               r"got 'swish'"),
    (dict(num_heads=0), r"TransformerConfig.num_heads must be a positive int; got 0"),
    (dict(num_heads="x"), r"TransformerConfig.num_heads must be an int; got 'x' \(str\)"),
])
def test_a_value_the_model_section_cannot_hold_is_refused_naming_the_file(golden, change,
                                                                         message):
    edit_config(golden, lambda meta: meta["model"].update(change))
    where = re.escape(str(golden / "config.json"))
    with pytest.raises((TypeError, ValueError), match=f"^{where}: model: {message}$"):
        open_run(golden)


def test_a_format_1_run_naming_no_preset_is_refused_naming_the_file(golden):
    def to_format_1(meta):
        model = {k: v for k, v in meta["model"].items() if k != "class"}
        return {"train": {"tokenizer": "word"}, "model_class": "gpt2", "model": model}

    edit_config(golden, to_format_1)
    where = re.escape(str(golden / "config.json"))
    with pytest.raises(ValueError, match=f"^{where}: model_class must be one of "
                                         f"'transformer_tiny', .*; got 'gpt2'$"):
        open_run(golden)


def test_tokenizer_that_does_not_fit_the_model_is_refused(golden):
    edit_config(golden, lambda meta: meta["model"].update(src_vocab_size=99,
                                                          tgt_vocab_size=99))
    with pytest.raises(ValueError, match=r"vocabularies .* do not match the model section"):
        load_translator(golden)


RNN = ["--data", "tsv", "--tokenizer", "word", "--model", "bahdanau_small", "--embed-size", "8",
       "--num-hiddens", "8", "--num-encoder-layers", "1", "--num-decoder-layers", "1",
       "--warmup", "10", "--eval-every", "0", "--no-progress", "--device", "cpu",
       "--eval-sentences", "4", "--valid-size", "10", "--max-tokens", "400",
       "--max-sentence-tokens", "12", "--bf16", "false", "--threads", "1"]


def test_a_bahdanau_run_saved_with_num_layers_opens_translates_and_resumes(tmp_path, capsys):
    """Runs saved before the RNN's layers were named as the Transformer's store
    ``num_layers`` in the model section and in the [model] table."""
    from attnkit.cli import main
    from attnkit.runs import list_checkpoints

    from .._data import digits_pairs_file

    argv = ["train", *RNN, "--train-path", str(digits_pairs_file(tmp_path / "pairs.tsv")),
            "--out-dir", str(tmp_path / "run")]
    assert main([*argv, "--max-steps", "2"]) == 0
    (ckpt,) = list_checkpoints(tmp_path / "run" / "checkpoints")
    translated = load_translator(ckpt).translate(["3 1", "7"], beam_size=2)

    def as_saved_before(meta):
        meta["model"]["num_layers"] = meta["model"].pop("num_encoder_layers")
        del meta["model"]["num_decoder_layers"]
        meta["train"]["model"] = {"preset": "bahdanau_small", "embed_size": 8,
                                  "num_hiddens": 8, "num_layers": 1}

    edit_config(ckpt, as_saved_before)
    model = open_run(tmp_path / "run").model
    assert (model.num_encoder_layers, model.num_decoder_layers) == (1, 1)
    assert load_translator(ckpt).translate(["3 1", "7"], beam_size=2) == translated
    capsys.readouterr()
    assert main([*argv, "--max-steps", "3"]) == 0
    said = capsys.readouterr()
    assert f"resumed from {ckpt} at step 2" in said.out + said.err
    assert [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")] == [
        "step-000002", "step-000003"]
