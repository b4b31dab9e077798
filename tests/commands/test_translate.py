"""``attnkit translate``: sentences from arguments, a file or stdin; n-best lists in Moses
format, and their errors in one line."""

import os
import re
import subprocess
import sys

import pytest

from attnkit.cli import main
from attnkit.decode.translator import load_translator
from tests.decode.test_translator import GOLDEN, SENTENCES

from ._tatoeba import needs_data

LINE = re.compile(r"^(\d+) \|\|\| (.*) \|\|\| (-?\d+\.\d{4})$")


@pytest.fixture(scope="module")
def golden():
    return load_translator(GOLDEN)


def test_translate_n_best_prints_k_lines_per_sentence_in_moses_format(golden, capsys,
                                                                      tmp_path):
    f = tmp_path / "in.txt"
    f.write_text("\n".join(SENTENCES) + "\n")
    assert main(["translate", "--checkpoint", str(GOLDEN), "--input", str(f), "--beam-size",
                 "4", "--n-best", "3", "--threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    parsed = [LINE.match(x) for x in lines]
    assert all(parsed), lines
    rows = [(int(m[1]), m[2], float(m[3])) for m in parsed]
    plain = golden.translate(SENTENCES, beam_size=4)
    for i, sentence in enumerate(SENTENCES):
        mine = [(text, score) for j, text, score in rows if j == i]
        if not sentence:
            assert mine == [("", 0.0)] and f"{i} |||  ||| 0.0000" in lines
            continue
        assert len(mine) == 3 and mine[0][0] == plain[i]
        assert [s for _, s in mine] == sorted((s for _, s in mine), reverse=True)
    assert [j for j, _, _ in rows] == sorted(j for j, _, _ in rows)  # input order
    # --n-best 1 is the plain beam output
    assert main(["translate", "--checkpoint", str(GOLDEN), "--beam-size", "4", "--n-best",
                 "1", "--threads", "1", *SENTENCES[:2]]) == 0
    assert [LINE.match(x)[2] for x in capsys.readouterr().out.splitlines()] == plain[:2]


@pytest.mark.parametrize("args, message", [
    (["--n-best", "5", "--beam-size", "4"], "--n-best 5 needs --beam-size >= 5"),
    (["--n-best", "0"], "--n-best must be a positive int; got 0"),
    (["--n-best", "2", "--engine", "ctranslate2", "--model", "nowhere"],
     "--n-best is not available with --engine ctranslate2"),
])
def test_translate_n_best_errors_are_one_line(capsys, args, message):
    assert main(["translate", "--checkpoint", str(GOLDEN), "--threads", "1", *args,
                 "3 1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("attnkit translate: error:") and message in err


@needs_data
def test_translate_from_arguments_file_and_stdin(run_dir, tmp_path, capsys):
    assert main(["translate", "--checkpoint", str(run_dir), "--beam-size", "2",
                 "Go.", "I am a teacher."]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    f = tmp_path / "in.txt"
    f.write_text("Hello.\nRun!\nWho?\n")
    assert main(["translate", "--checkpoint", str(run_dir), "--input", str(f),
                 "--beam-size", "1"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    r = subprocess.run([sys.executable, "-m", "attnkit.cli", "translate", "--checkpoint",
                        str(run_dir)], input="Stop!\nWait.\n", capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 2
