"""Sizes that cannot fit are refused before anything is allocated, in one line that names
the flag and the memory it needs; under real ``RLIMIT_AS`` limits, and fast."""

import time

import pytest

from attnkit.cli import main
from attnkit.models.build import build_model
from attnkit.models.config import bahdanau_small, transformer_tiny
from attnkit.models.rnn_dot import rnn_dot_small
from attnkit.models.sizes import decoding_memory, model_size, training_memory

from ._limits import GiB, address_space_headroom, run_limited
from .test_reliability import GOLDEN, TINY, one_error_line, pairs_file

SECONDS = 60  # a refusal is a meta-device count: far below this even on 2 busy cores


# --------------------------------------------------------------- the estimate itself
@pytest.mark.parametrize("config", [
    transformer_tiny(23, 29, num_encoder_layers=3, num_decoder_layers=5),
    transformer_tiny(31, positional="learned", num_encoder_layers=3, max_len=37),
    transformer_tiny(31, share_embeddings=True, tie_output=True, num_kv_heads=1,
                     num_decoder_layers=4),
    transformer_tiny(31, score="additive", positional="rope", num_decoder_layers=3),
    transformer_tiny(31, positional="alibi", num_decoder_layers=3, bias=False),
    bahdanau_small(23, 29, embed_size=7, num_hiddens=11, num_encoder_layers=4,
                   num_decoder_layers=4),
    rnn_dot_small(23, 29, embed_size=7, num_hiddens=11, num_encoder_layers=3,
                  num_decoder_layers=3, score="bilinear"),
], ids=["layers", "learned", "shared-mqa", "additive-rope", "alibi", "bahdanau", "rnn-dot"])
def test_model_size_counts_what_build_model_allocates(config):
    model = build_model(config)
    size = model_size(config)
    assert size.parameters == sum(p.numel() for p in model.parameters())
    assert size.buffers == sum(b.numel() for b in model.buffers())
    assert training_memory(config).total == 16 * size.parameters + 4 * size.buffers


def test_a_million_layers_are_counted_without_building_them():
    started = time.monotonic()
    one, many = model_size(transformer_tiny(40)), model_size(
        transformer_tiny(40, num_encoder_layers=10**6))
    per_layer = model_size(transformer_tiny(40, num_encoder_layers=3)).parameters \
        - model_size(transformer_tiny(40, num_encoder_layers=2)).parameters
    assert many.parameters == one.parameters + (10**6 - 2) * per_layer
    assert time.monotonic() - started < SECONDS


@pytest.mark.parametrize("config", [bahdanau_small(40), transformer_tiny(40), rnn_dot_small(40)])
def test_decoding_memory_grows_with_beams_and_steps(config):
    def state(rows, steps):
        return decoding_memory(config, rows=rows, steps=steps).activations

    assert state(8, 10) == 2 * state(4, 10)  # every row holds the same
    assert state(4, 30) - state(4, 20) == state(4, 20) - state(4, 10) > 0  # linear in steps
    model = build_model(config)
    assert decoding_memory(config, rows=4, steps=10).weights == 4 * (
        sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers()))


# --------------------------------------------------------------- train, in this process
@pytest.mark.parametrize("flag, value", [
    ("--num-hiddens", "10000000"),
    ("--ffn-num-hiddens", "1000000000000"),
    ("--max-len", "10000000000000"),
    ("--num-encoder-layers", "1000000000"),
])
def test_train_refuses_a_model_no_machine_holds(tmp_path, capsys, flag, value):
    argv = ["train", *TINY, "--train-path", str(pairs_file(tmp_path / "p.tsv", 40)),
            "--out-dir", str(tmp_path / "run"), "--max-steps", "1", flag, value]
    started = time.monotonic()
    with address_space_headroom(2 * GiB):  # should the refusal fail, allocation fails fast
        code = main(argv)
    err = capsys.readouterr().err
    line = one_error_line(err, "train")
    assert code == 2
    assert f"{flag} {value} ([model] {flag[2:].replace('-', '_')}): training needs" in line
    assert "parameters with their gradients and Adam state" in line
    assert "this process may use" in line and "iB" in line
    assert time.monotonic() - started < SECONDS
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before the run began


@pytest.mark.parametrize("preset", ["bahdanau_small", "rnn_dot_small"])
def test_train_names_an_rnns_layers_that_no_machine_holds(tmp_path, capsys, preset):
    """An RNN's two layer counts must stay equal: they are lowered together to find the
    size to blame, and the first is named."""
    argv = ["train", "--data", "dates", "--num-examples", "40", "--model", preset,
            "--num-encoder-layers", "1000000000", "--num-decoder-layers", "1000000000",
            "--out-dir", str(tmp_path / "run"), "--max-steps", "1", "--device", "cpu"]
    with address_space_headroom(2 * GiB):  # should the refusal fail, allocation fails fast
        code = main(argv)
    line = one_error_line(capsys.readouterr().err, "train")
    assert code == 2
    assert "--num-encoder-layers 1000000000 ([model] num_encoder_layers): training needs" \
        in line
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_train_refuses_a_validation_beam_no_machine_holds(tmp_path, capsys):
    """The validation search runs at the end of the run (and every eval_every): a beam
    that cannot fit is refused before step 1, not after the steps are done."""
    argv = ["train", *TINY, "--train-path", str(pairs_file(tmp_path / "p.tsv", 40)),
            "--out-dir", str(tmp_path / "run"), "--max-steps", "1",
            "--beam-size", "1000000000"]
    with address_space_headroom(2 * GiB):
        code = main(argv)
    line = one_error_line(capsys.readouterr().err, "train")
    assert code == 2
    assert "--beam-size 1000000000 ([run] beam_size) x " in line
    assert "validation sentences at a time" in line and "this process may use" in line
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_train_refuses_more_accumulation_steps_than_an_epoch_has(tmp_path, capsys):
    code = main(["train", *TINY, "--train-path", str(pairs_file(tmp_path / "p.tsv", 40)),
                 "--out-dir", str(tmp_path / "run"), "--epochs", "1", "--accum-steps",
                 "1000"])
    line = one_error_line(capsys.readouterr().err, "train")
    assert code == 2
    assert "--accum-steps 1000 ([optim] accum_steps) is more than the" in line
    assert "no optimizer step could complete" in line


# --------------------------------------------------------------- under a real RLIMIT_AS
def test_train_refuses_what_fits_the_machine_but_not_the_limit(tmp_path):
    """d = 4096 needs 3.0 GiB to train (202 M parameters, 16 bytes each): more than a
    3 GiB address space leaves once python and torch are in it, less than most machines
    have."""
    res, seconds = run_limited(
        ["train", *TINY, "--num-hiddens", "4096", "--train-path",
         str(pairs_file(tmp_path / "p.tsv", 40)), "--out-dir", str(tmp_path / "run"),
         "--max-steps", "1"])
    err = res.stderr.decode()
    line = one_error_line(err, "train")
    assert res.returncode == 2
    assert "--num-hiddens 4096 ([model] num_hiddens): training needs at least 3." in line
    assert "GiB this process may use" in line
    assert seconds < 2 * SECONDS


def decoding_refusal(err: str, command: str, flag: str) -> None:
    line = one_error_line(err, command)
    assert flag in line and "decoding needs about" in line
    assert "this process may use" in line


def test_an_rnn_output_length_that_cannot_fit_is_refused_under_a_limit(bahdanau_run):
    """The RNN has no positional table: --max-output-len alone sets the length (10^9 once
    allocated 8 GB up front)."""
    res, seconds = run_limited(["translate", "--checkpoint", str(bahdanau_run), "--beam-size",
                                "1", "--max-output-len", "1000000000", "3 1"])
    assert res.returncode == 2 and res.stdout == b""
    decoding_refusal(res.stderr.decode(), "translate", "--max-output-len 1000000000")
    assert seconds < 2 * SECONDS


@pytest.mark.parametrize("command", ["translate", "evaluate"])
def test_a_beam_that_cannot_fit_is_refused(tmp_path, capsys, command):
    (tmp_path / "src").write_text("3 1\n")
    (tmp_path / "ref").write_text("three one\n")
    inputs = ["3 1"] if command == "translate" else ["--src", str(tmp_path / "src"), "--ref",
                                                     str(tmp_path / "ref")]
    started = time.monotonic()
    with address_space_headroom(2 * GiB):  # should the refusal fail, allocation fails fast
        code = main([command, "--checkpoint", str(GOLDEN), "--beam-size", "100000000",
                     *inputs])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    decoding_refusal(err, command, "--beam-size 100000000")
    assert time.monotonic() - started < SECONDS
