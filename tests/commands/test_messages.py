"""Messages that tell the truth: a FIFO or a device is "not a regular file" (not "not
found"), sentencepiece's failures name the file and the cause, an empty test set is one
line. Real FIFOs (``os.mkfifo``), a real pipe as standard input, real devices."""

import contextlib
import os
import time

import pytest

from attnkit.cli import main
from attnkit.data.tokenizer import SentencePieceTokenizer

from .test_reliability import GOLDEN, TINY, one_error_line


def error_of(argv, capsys, command: str) -> str:
    started = time.monotonic()
    code = main(argv)
    line = one_error_line(capsys.readouterr().err, command)
    assert code == 2 and time.monotonic() - started < 60  # nothing waited on the FIFO
    return line


@contextlib.contextmanager
def stdin_is_a_pipe(data: bytes):
    """File descriptor 0 is the read end of a real pipe holding ``data`` in the block."""
    saved = os.dup(0)
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    os.dup2(r, 0)
    os.close(r)
    try:
        yield
    finally:
        os.dup2(saved, 0)
        os.close(saved)


def test_a_fifo_as_config_is_not_called_missing(tmp_path, capsys):
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    line = error_of(["train", "--config", str(fifo)], capsys, "train")
    assert f"config file: {fifo} is not a regular file (it is a FIFO)" in line
    assert "not found" not in line


def test_dev_stdin_as_config_is_not_called_missing(capsys):
    with stdin_is_a_pipe(b"[run]\nseed = 1\n"):
        line = error_of(["train", "--config", "/dev/stdin"], capsys, "train")
    assert "config file: /dev/stdin is not a regular file (it is a FIFO)" in line


@pytest.mark.parametrize("argv, command", [
    (["translate", "--checkpoint", str(GOLDEN), "--input", "/dev/zero"], "translate"),
    (["evaluate", "--checkpoint", str(GOLDEN), "--src", "/dev/zero", "--ref", "/dev/zero"],
     "evaluate"),
    (["train", *TINY, "--train-path", "/dev/zero", "--max-steps", "1"], "train"),
])
def test_a_device_is_not_a_regular_file(capsys, tmp_path, argv, command):
    line = error_of([*argv, *(["--out-dir", str(tmp_path / "run")] if command == "train"
                              else [])], capsys, command)
    assert "/dev/zero is not a regular file (it is a character device)" in line
    assert "no such file" not in line


def test_a_fifo_as_a_test_set_is_named_as_such(tmp_path, capsys):
    (tmp_path / "ref").write_text("three one\n")
    fifo = tmp_path / "src"
    os.mkfifo(fifo)
    line = error_of(["evaluate", "--checkpoint", str(GOLDEN), "--src", str(fifo), "--ref",
                     str(tmp_path / "ref")], capsys, "evaluate")
    assert f"{fifo} is not a regular file (it is a FIFO)" in line


def test_sentencepiece_on_sentences_over_its_limit_names_the_file_and_the_cause(
        tmp_path, capsys):
    corpus = tmp_path / "one-long-line.tsv"
    corpus.write_text("1 2 " * 1500 + "\t" + "one two " * 1000 + "\n")  # > 4192 bytes each
    (tmp_path / "valid.tsv").write_text("1 2\tone two\n")
    argv = ["train", *TINY, "--tokenizer", "sentencepiece", "--vocab-size", "12",
            "--train-path", str(corpus), "--valid-path", str(tmp_path / "valid.tsv"),
            "--out-dir",
            str(tmp_path / "run"), "--max-steps", "1", "--max-sentence-tokens", "12"]
    line = error_of(argv, capsys, "train")
    assert f"{corpus}: cannot train the [tokenizer] (sentencepiece)" in line
    assert "longer than sentencepiece's limit of 4192 bytes" in line
    assert "INTERNAL" not in line and "sentences_" not in line


def test_sentencepiece_on_blank_sentences_says_so():
    with pytest.raises(ValueError, match="all 2 training sentences are blank"):
        SentencePieceTokenizer.train(["", "  "], vocab_size=8)


def test_evaluate_on_empty_files_is_one_line(tmp_path, capsys):
    (tmp_path / "src").write_bytes(b"")
    (tmp_path / "ref").write_bytes(b"")
    line = error_of(["evaluate", "--checkpoint", str(GOLDEN), "--src", str(tmp_path / "src"),
                     "--ref", str(tmp_path / "ref")], capsys, "evaluate")
    assert f"--src {tmp_path / 'src'} and --ref {tmp_path / 'ref'}: no sentences to score" \
        in line


@pytest.mark.parametrize("flag", ["--src", "--ref"])
@pytest.mark.parametrize("what, says", [
    ("device", "is not a regular file (it is a character device)"),
    ("missing", "no such file"),
    ("binary", "line 2 is not valid UTF-8"),
])
def test_evaluate_names_the_flag_of_a_file_that_is_not_text(tmp_path, capsys, flag, what, says):
    (tmp_path / "good").write_text("3 1\n2 7\n")
    (tmp_path / "binary").write_bytes(b"3 1\n\xff\xfe\n")
    path = {"device": "/dev/zero", "missing": str(tmp_path / "missing"),
            "binary": str(tmp_path / "binary")}[what]
    files = {"--src": str(tmp_path / "good"), "--ref": str(tmp_path / "good"), flag: path}
    argv = ["evaluate", "--checkpoint", str(GOLDEN), *(x for kv in files.items() for x in kv)]
    line = error_of(argv, capsys, "evaluate")
    assert line.startswith(f"attnkit evaluate: error: {flag} {path}: ") and says in line, line
