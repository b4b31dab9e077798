"""One capture path: :meth:`Translator.capture` serves ``attnkit explore``, ``attnkit plot``
and the demo, and what it captures is the model's attention for the pair.

Oracle: the golden run (digits -> English words), whose captures are compared with the
model's own attention weights of a forward pass under the capture hooks."""

from pathlib import Path

import pytest
import torch

from attnkit.cli import main
from attnkit.decode import translator as translator_module
from attnkit.decode.translator import Translator, load_translator

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "run-format-2"


@pytest.fixture
def captured(monkeypatch) -> list[tuple[str, str | None]]:
    """Each call of Translator.capture, as ``(src, tgt)`` (the real capture still runs)."""
    calls, real = [], Translator.capture

    def counted(self, src, tgt=None, **kwargs):
        calls.append((src, tgt))
        return real(self, src, tgt, **kwargs)

    monkeypatch.setattr(translator_module.Translator, "capture", counted)
    return calls


def test_explore_and_plot_capture_through_the_translator(captured, tmp_path):
    assert main(["explore", "--checkpoint", str(GOLDEN), "--src", "3 1 4",
                 "--out", str(tmp_path / "view.html")]) == 0
    assert main(["explore", "--checkpoint", str(GOLDEN), "--src", "3 1 4", "--tgt", "one",
                 "--out", str(tmp_path / "given.html")]) == 0
    assert main(["plot", "attention-maps", "--checkpoint", str(GOLDEN), "--src", "2 7",
                 "--out", str(tmp_path), "--format", "png"]) == 0
    own = load_translator(GOLDEN).translate(["3 1 4"])[0]
    assert captured == [("3 1 4", own), ("3 1 4", "one"), ("2 7", None)]
    assert (tmp_path / "view.html").stat().st_size > 0
    assert (tmp_path / "attention-maps.png").stat().st_size > 0


def test_the_demo_captures_through_the_translator(captured, tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--max-steps", "2", "--heldout", "4",
                 "--threads", "1"]) == 0
    assert len(captured) == 1 and captured[0][1] is not None  # its own translation, given
    assert (tmp_path / "attention-explorer.html").stat().st_size > 0


def test_a_capture_is_one_forward_pass_of_the_pair():
    tr = load_translator(GOLDEN)
    captures, src_tokens, tgt_tokens = tr.capture("3 1 4", "three")
    ids = tr.tokenizers.src.encode("3 1 4")
    assert len(src_tokens) == len(ids) + 1 and src_tokens[-1] == "<eos>"
    assert tgt_tokens[0] == "<bos>" and len(tgt_tokens) == len(
        tr.tokenizers.tgt.encode("three")) + 1
    assert len(src_tokens) != len(tgt_tokens)  # so the shapes below tell them apart
    assert captures, "no attention module captured"
    for name, w in captures.items():
        rows = len(tgt_tokens) if "decoder" in name else len(src_tokens)
        cols = len(src_tokens) if "cross" in name or "encoder" in name else len(tgt_tokens)
        assert w.shape[-2:] == (rows, cols), name
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]), rtol=0, atol=1e-5)
        if "self_attention" in name and "decoder" in name:  # causal: nothing after a token
            assert torch.all(w[0].triu(1) == 0), name
    again, _, _ = tr.capture("3 1 4", "three")
    for name, w in captures.items():
        torch.testing.assert_close(again[name], w, rtol=0, atol=0)  # eval mode: no dropout
