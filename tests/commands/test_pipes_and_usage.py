"""Streams as GNU tools treat them: a reader that goes away ends the command quietly
(exit 141, 128 + SIGPIPE; nothing on stderr); an output encoding that cannot hold the
text is one line saying how to choose UTF-8. A mistyped option is reported by its own
subcommand, with its usage line and the closest option."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from attnkit.cli import EXIT_CLOSED_PIPE, main

from ._limits import attnkit_command, child_env

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "run-format-2"


def closed_pipe_run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``attnkit ARGV`` writing into a pipe whose reader has already gone."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(attnkit_command(*argv), stdout=write, stderr=subprocess.PIPE,
                              env=child_env(), cwd=cwd, timeout=120)
    finally:
        os.close(write)


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["translate", "--help"]])
def test_help_into_a_closed_pipe_is_quiet(argv):
    res = closed_pipe_run(*argv)
    assert res.stderr == b"" and res.returncode in (0, EXIT_CLOSED_PIPE)


def test_evaluate_into_a_closed_pipe_is_quiet(tmp_path):
    (tmp_path / "src.txt").write_text("3 1 4\n2 7\n")
    (tmp_path / "ref.txt").write_text("4 1 3\n7 2\n")
    res = closed_pipe_run("evaluate", "--checkpoint", str(GOLDEN), "--src", "src.txt",
                          "--ref", "ref.txt", "--beam-size", "1", cwd=tmp_path)
    assert (res.returncode, res.stderr) == (EXIT_CLOSED_PIPE, b"")


def test_translate_stops_quietly_when_its_reader_leaves_after_one_line():
    proc = subprocess.Popen(attnkit_command("translate", "--checkpoint", str(GOLDEN),
                                            "--beam-size", "1"),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=child_env())
    proc.stdin.write(b"3 1\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip()  # one translation, then the reader goes away
    proc.stdout.close()
    try:
        proc.stdin.write(b"4 1 5\n" * 50)
        proc.stdin.close()
    except BrokenPipeError:
        pass  # it ended already
    assert proc.wait(timeout=120) == EXIT_CLOSED_PIPE
    assert proc.stderr.read() == b""


def test_an_output_encoding_without_the_text_is_one_line(tmp_path):
    res = subprocess.run(attnkit_command("plot", "causal-mask", "--format", "svg", "--out",
                                         str(tmp_path / "Bilder-für-Mädchen")),
                         env={**child_env(), "PYTHONIOENCODING": "ascii"},
                         capture_output=True, timeout=120)
    err = res.stderr.decode().splitlines()
    assert res.returncode == 2 and len(err) == 1, err
    assert err[0].startswith("attnkit plot: error: the output's encoding (ascii) cannot")
    assert "PYTHONIOENCODING=utf-8" in err[0]


def test_a_mistyped_option_shows_its_subcommands_usage_and_the_closest(capsys):
    with pytest.raises(SystemExit):
        main(["translate", "--checkpoint", str(GOLDEN), "--bem-size", "4"])
    err = capsys.readouterr().err
    assert err.startswith("usage: attnkit translate ")
    assert "attnkit translate: error: unrecognized arguments: --bem-size" in err
    assert "did you mean --beam-size?" in err


def test_a_mistyped_option_of_a_nested_subcommand_shows_its_usage(capsys):
    with pytest.raises(SystemExit):
        main(["export", "ctranslate2", "--checkpoint", "x", "--out", "y", "--quantisation",
              "int8"])
    err = capsys.readouterr().err
    assert err.startswith("usage: attnkit export ctranslate2 ")
    assert "did you mean --quantization?" in err


def test_an_unknown_multi30k_split_names_the_flag(capsys):
    assert main(["evaluate", "--checkpoint", str(GOLDEN), "--multi30k-split", "tset"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("attnkit evaluate: error: --multi30k-split must be one of 'train', 'val', "
                   "'test_2016_flickr'; got 'tset'")
