"""The RNN with dot-product attention from the command line: trained on the built-in
dates task, resumed, translated (greedy and beam), evaluated, explored, and refused by
the CTranslate2 export in one line."""

import json

import pytest

from attnkit.cli import main
from attnkit.runs import list_checkpoints

from .test_reliability import one_error_line

TINY_RNN = ["--data", "dates", "--num-examples", "200", "--valid-size", "10",
            "--model", "rnn_dot_small", "--score", "bilinear", "--embed-size", "8",
            "--num-hiddens", "16", "--num-encoder-layers", "1", "--num-decoder-layers", "1",
            "--warmup", "10", "--eval-every", "0", "--eval-sentences", "4",
            "--max-tokens", "400", "--no-progress", "--device", "cpu",
            "--bf16", "false", "--threads", "1"]  # the same numbers on every CPU kind


@pytest.fixture(scope="module")
def rnn_dot_run(tmp_path_factory):
    """A run trained 3 steps, then resumed to 5."""
    out = tmp_path_factory.mktemp("rnn-dot") / "run"
    argv = ["train", *TINY_RNN, "--out-dir", str(out), "--checkpoint-every", "3",
            "--log-every", "1"]
    assert main([*argv, "--max-steps", "3"]) == 0
    assert main([*argv, "--max-steps", "5"]) == 0
    return out


def test_training_saves_and_resumes_the_family(rnn_dot_run):
    assert [p.name for p in list_checkpoints(rnn_dot_run / "checkpoints")] == [
        "step-000003", "step-000005"]
    meta = json.loads((rnn_dot_run / "checkpoints" / "step-000005" / "config.json").read_text())
    assert meta["model"]["class"] == "RNNDotConfig" and meta["model"]["score"] == "bilinear"
    log = [json.loads(x) for x in (rnn_dot_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4, 5]  # 4 and 5 resumed


@pytest.mark.parametrize("beam", ["1", "3"])
def test_translate_and_evaluate(rnn_dot_run, tmp_path, capsys, beam):
    assert main(["translate", "--checkpoint", str(rnn_dot_run), "--beam-size", beam,
                 "--max-output-len", "12", "March 3, 2001", "1/2/99"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    (tmp_path / "src").write_text("March 3, 2001\n1/2/99\n")
    (tmp_path / "ref").write_text("2001-03-03\n1999-01-02\n")
    assert main(["evaluate", "--checkpoint", str(rnn_dot_run), "--src", str(tmp_path / "src"),
                 "--ref", str(tmp_path / "ref"), "--beam-size", beam, "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{"):])["sentences"] == 2


def test_explore_shows_the_decoders_attention(rnn_dot_run, tmp_path):
    html = tmp_path / "view.html"
    assert main(["explore", "--checkpoint", str(rnn_dot_run), "--src", "March 3, 2001",
                 "--out", str(html)]) == 0
    assert '"kind":"cross","layer":0' in html.read_text()  # the decoder.attention


def test_export_is_refused_in_one_line_before_anything_is_written(rnn_dot_run, tmp_path,
                                                                   capsys):
    code = main(["export", "ctranslate2", "--checkpoint", str(rnn_dot_run), "--out",
                 str(tmp_path / "ct2")])
    line = one_error_line(capsys.readouterr().err, "export ctranslate2")
    assert code == 2
    assert line.endswith("cannot export a RNNDotConfig model to CTranslate2: the RNN with "
                         "dot-product attention has no CTranslate2 spec (only the Transformer "
                         "has)")
    assert not (tmp_path / "ct2").exists()


def test_an_output_length_no_memory_holds_is_refused(rnn_dot_run, capsys):
    assert main(["translate", "--checkpoint", str(rnn_dot_run), "--beam-size", "4",
                 "--max-output-len", "1000000000000", "1/2/99"]) == 2
    line = one_error_line(capsys.readouterr().err, "translate")
    assert "--max-output-len 1000000000000" in line and "decoding needs about" in line


def test_a_score_the_family_has_not_got_is_named_as_it_was_given(tmp_path, capsys):
    """The scores of rnn_dot are fewer than the Transformer's: one the family refuses is
    named by the flag or the config key that gave it, not by the config class's field."""
    code = main(["train", "--data", "dates", "--model", "rnn_dot_small", "--score",
                 "additive", "--max-steps", "1", "--out-dir", str(tmp_path / "a")])
    line = one_error_line(capsys.readouterr().err, "train")
    assert code == 2 and line.endswith("--score must be one of 'dot', 'scaled_dot', "
                                       "'bilinear'; got 'additive'")
    cfg = tmp_path / "rd.toml"
    cfg.write_text('[data]\nkind = "dates"\n[model]\npreset = "rnn_dot_small"\n'
                   'score = "additve"\n')
    code = main(["train", "--config", str(cfg), "--max-steps", "1", "--out-dir",
                 str(tmp_path / "b")])
    line = one_error_line(capsys.readouterr().err, "train")
    assert code == 2 and f"{cfg}: [model] score must be one of" in line
    assert "RNNDotConfig" not in line
