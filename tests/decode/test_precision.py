"""The precisions a model translates in: int8 quantizes the linear layers of a copy of
every family's model (embeddings, norms and recurrent cells stay fp32), bf16 runs under
autocast, and the choice of ``auto`` is recorded per weights and machine.

Tolerances: int8 rounds each weight to 1/254 of its layer's largest and each
activation row likewise, bf16 keeps 8 bits of mantissa; through the one or two layers
of these small models that moves the log-probabilities by a few hundredths, so the
relative error of the output allowed here (5%) separates them from a broken conversion
(lost or transposed weights give errors of order 100%)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from attnkit.decode import precision
from attnkit.decode.precision import (
    best_within_tolerance,
    bf16_note,
    quantized_int8,
    record_choice,
    recorded_choice,
    running,
)
from attnkit.decode.translator import load_translator
from attnkit.models.build import build_model
from attnkit.models.family import PRESETS

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "run-format-2"
SMALL = ["transformer_tiny", "bahdanau_small", "rnn_dot_small"]  # one per family


def _log_probs(model, src, tgt, lens) -> torch.Tensor:
    with torch.no_grad():
        return torch.log_softmax(model(src, tgt, lens).float(), dim=-1)


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("preset", SMALL)
def test_int8_quantizes_a_copy_of_every_linear_layer(preset):
    torch.manual_seed(0)
    model = build_model(PRESETS[preset](11, 13)).eval()
    q = quantized_int8(model)
    linears = [m for m in q.modules() if type(m) is nn.Linear]
    quantized = [m for m in q.modules() if type(m).__name__ == "Int8Linear"]
    assert not linears and quantized  # every one, and there were some
    assert all(type(m) is not type(quantized[0]) for m in model.modules())  # original kept
    floats = [m for m in q.modules() if isinstance(m, (nn.Embedding, nn.LayerNorm, nn.GRU,
                                                        nn.LSTM))]
    assert floats and all(p.dtype == torch.float32 for m in floats for p in m.parameters())
    src, tgt = torch.randint(3, 11, (4, 7)), torch.randint(3, 13, (4, 5))
    lens = torch.tensor([7, 5, 3, 1])
    assert _relative_error(_log_probs(q, src, tgt, lens), _log_probs(model, src, tgt, lens)) \
        < 0.05


def test_int8_decoding_steps_run_every_linear_product_in_int8(monkeypatch):
    """The one-token step keeps no float shortcut around an int8 model: its q/k/v product
    is one int8 layer (the three stacked and quantized again), and the output projections,
    the FFN and the output layer run as the int8 layers they are, through ``step_forward``
    (the layer's own operator without the module call), which gives what a call gives."""
    from attnkit.nn.multihead import KVCache

    torch.manual_seed(0)
    model = build_model(PRESETS["transformer_tiny"](11, 13)).eval()
    q = quantized_int8(model)
    int8 = type(next(m for m in q.modules() if type(m).__name__ == "Int8Linear"))
    names = {id(m): name for name, m in q.named_modules() if type(m) is int8}
    called, real = [], int8.step_forward

    def recorded(layer, x):
        out = real(layer, x)
        assert torch.equal(out, layer(x))  # the module's own call, the same numbers
        called.append(names.get(id(layer), "fused"))
        return out

    monkeypatch.setattr(int8, "step_forward", recorded)
    src, lens = torch.randint(3, 11, (2, 5)), torch.tensor([5, 3])
    with torch.no_grad():
        state = q.init_state(q.encode(src, lens), lens)
        for _ in range(2):
            _, state = q.decode_step(torch.full((2, 1), 1), state)
    fused = [cache.fused for layer in state.caches for cache in layer
             if isinstance(cache, KVCache) and not cache.static]
    assert fused and all(type(f.__self__) is int8 for f in fused)
    assert {n.rsplit(".", 1)[-1] for n in called} >= {"W_o", "W_q", "dense1", "dense2",
                                                      "output", "fused"}


def test_int8_keeps_a_tied_output_projection_and_translates_alike():
    """The golden model shares its embeddings and ties its output projection to them."""
    tr = load_translator(GOLDEN)
    assert tr.run.model.tie_output and tr.run.model.share_embeddings
    q = tr.with_precision("int8")
    assert q.precision == "int8" and q.model is not tr.model
    assert q.model.output.weight is q.model.decoder.embed.embedding.weight  # fp32, shared
    sentences = ["3 1 4", "1 5 9 2", "", "6", "2 7 1 8 2 8", "0 0 7"]
    assert q.translate(sentences) == tr.translate(sentences)
    assert q.translate_n_best(sentences, n_best=2, beam_size=3)[0][0][0] == \
        tr.translate(["3 1 4"], beam_size=3)[0]


def test_bf16_runs_the_matrix_products_under_autocast():
    tr = load_translator(GOLDEN)
    b = tr.with_precision("bf16")
    assert b.model is tr.model and b.precision == "bf16"
    x = torch.randn(3, 4)
    with running("bf16"):
        assert (x @ x.T).dtype == torch.bfloat16
    with running("int8"), running("fp32"):
        assert (x @ x.T).dtype == torch.float32
    sentences = ["3 1 4", "1 5 9 2", "6", "2 7 1 8 2 8"]
    assert b.translate(sentences) == tr.translate(sentences)
    captures, _, _ = b.capture("3 1 4")
    assert captures


@pytest.mark.parametrize("value", ["fp16", "auto", "", None])
def test_an_unknown_precision_is_refused_before_anything_is_read(tmp_path, value):
    with pytest.raises(ValueError, match="precision must be one of 'fp32', 'bf16', 'int8'; "
                                         f"got {value!r}"):
        load_translator(tmp_path / "no-such-run", precision=value)


def test_a_translator_changes_precision_only_from_fp32():
    q = load_translator(GOLDEN, precision="int8")
    assert q.with_precision("int8") is q
    with pytest.raises(ValueError, match="a int8 translator cannot become bf16; load the run "
                                         "again"):
        q.with_precision("bf16")


@pytest.mark.parametrize("substitute, slow", [("none", True), ("native", False)])
def test_bf16_note_says_when_this_cpu_runs_bf16_slowly(monkeypatch, substitute, slow):
    monkeypatch.setenv("ATTNKIT_CPU_BF16", substitute)
    note = bf16_note()
    assert (note is not None) == slow
    if slow:
        assert note.startswith("--precision bf16 runs, but slowly: ATTNKIT_CPU_BF16=none")


@pytest.mark.parametrize("measured, chosen", [
    # int8 fastest and 0.2 below fp32: kept
    ({"fp32": (30.0, 10), "int8": (29.8, 20), "bf16": (30.1, 15)}, "int8"),
    # int8 0.31 below: refused, bf16 the fastest left
    ({"fp32": (30.0, 10), "int8": (29.69, 20), "bf16": (30.1, 15)}, "bf16"),
    # exactly the tolerance below: kept
    ({"fp32": (30.0, 10), "int8": (29.7, 20)}, "int8"),
    # nothing faster than fp32
    ({"fp32": (30.0, 10), "int8": (31.0, 9)}, "fp32"),
])
def test_auto_takes_the_fastest_within_the_tolerance(measured, chosen):
    table = {p: {"bleu": b, "sentences_per_s": s} for p, (b, s) in measured.items()}
    assert best_within_tolerance(table) == chosen


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ATTNKIT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_choice_is_recorded_per_weights_and_machine(cache, monkeypatch):
    digest = "ab" * 32
    assert recorded_choice(digest) is None
    where = record_choice(digest, {"precision": "int8", "why": "measured"})
    assert where == cache / "precision-choices.json"
    assert recorded_choice(digest) == {"precision": "int8", "why": "measured"}
    assert recorded_choice("cd" * 32) is None  # other weights
    monkeypatch.setattr(precision, "cpu_model", lambda: "another CPU")
    assert recorded_choice(digest) is None  # another machine
    record_choice(digest, {"precision": "bf16"})
    monkeypatch.undo()
    monkeypatch.setenv("ATTNKIT_CACHE_DIR", str(cache))
    assert recorded_choice(digest)["precision"] == "int8"  # both kept


@pytest.mark.parametrize("content", [b"", b"\x00\xff not json", b"[1, 2]",
                                     b'{"KEY": {"precision": "fp64"}}',
                                     b'{"KEY": "int8"}'])
def test_a_damaged_record_file_is_no_choice(cache, content):
    """Nothing in the cache file is trusted but a record of a known precision."""
    digest = "ab" * 32
    cache.mkdir()
    key = precision.choice_key(digest)
    (cache / "precision-choices.json").write_bytes(content.replace(b"KEY",
                                                                   json.dumps(key)[1:-1].encode()))
    assert recorded_choice(digest) is None
    assert record_choice(digest, {"precision": "fp32"})  # and it is replaced
    assert recorded_choice(digest) == {"precision": "fp32"}


@pytest.mark.parametrize("blocked", ["a file as the folder", "a folder as the file"])
def test_an_unwritable_cache_records_nothing_and_says_why(tmp_path, monkeypatch, blocked):
    if blocked == "a file as the folder":
        (tmp_path / "file").write_text("not a folder")
        cache = tmp_path / "file" / "cache"
    else:
        cache = tmp_path / "cache"
        (cache / "precision-choices.json").mkdir(parents=True)
    monkeypatch.setenv("ATTNKIT_CACHE_DIR", str(cache))
    with pytest.raises(OSError):
        record_choice("ab" * 32, {"precision": "int8"})
    assert recorded_choice("ab" * 32) is None
