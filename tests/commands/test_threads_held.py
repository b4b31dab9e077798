"""Decoding commands hold torch's thread count for their work and give it back.

``translate`` and ``evaluate`` choose their threads once (``--threads``: auto or a
number) and hold them while they decode; called in process, as a library user or a
notebook calls ``main``, they leave the caller's setting as it was.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from attnkit.cli import main

from ..conftest import START_THREADS

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "run-format-2"


@pytest.mark.parametrize("threads", ["1", "2", "auto"])
def test_translate_gives_the_thread_count_back(three_threads, tmp_path, capsys, threads):
    src = tmp_path / "src.txt"
    src.write_text("3 1 4\n\n2 7\n")
    assert main(["translate", "--checkpoint", str(GOLDEN), "--input", str(src),
                 "--threads", threads]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert torch.get_num_threads() == START_THREADS


def test_evaluate_gives_the_thread_count_back(three_threads, tmp_path, capsys):
    (tmp_path / "src.txt").write_text("3 1 4\n2 7\n")
    (tmp_path / "ref.txt").write_text("4 1 3\n7 2\n")
    assert main(["evaluate", "--checkpoint", str(GOLDEN), "--src", str(tmp_path / "src.txt"),
                 "--ref", str(tmp_path / "ref.txt"), "--threads", "1", "--json"]) == 0
    assert '"sentences": 2' in capsys.readouterr().out
    assert torch.get_num_threads() == START_THREADS


def test_a_bad_thread_count_is_refused_by_the_one_parser(capsys):
    with pytest.raises(SystemExit):
        main(["translate", "--checkpoint", str(GOLDEN), "--threads", "0"])
    assert "argument --threads: expected auto or a positive int; got '0'" in capsys.readouterr().err
