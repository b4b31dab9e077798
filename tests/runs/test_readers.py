"""Readers beside a running writer: ``translate`` and ``evaluate`` on a run whose
training replaces its checkpoints (``--keep-last 1``) while they read it. A reader that
loses the race reads the new latest checkpoint, or says that the training replaced the
one it named; never a message that blames corruption. Real processes, nothing mocked."""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

from attnkit.cli import main
from attnkit.runs import latest_checkpoint

from ._writer import newest_step, wait_for

READS = 30  # at the rate they lose the race, 30 reads almost surely lose some
MIN_SAVES = 5  # the writer replaced its checkpoint at least this often while they read


def _call(argv: list[str], capsys, monkeypatch, stdin: bytes = b"3 1\n") -> tuple[int, str]:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out if code == 0 else err


def _rotating_writer(start, run: Path, *more: str):
    writer = start(run, "--checkpoint-every", "1", "--keep-last", "1", *more)
    wait_for(lambda: newest_step(run / "checkpoints") >= 2, "its second checkpoint", writer)
    return writer


def _read_while_it_rotates(writer, ckpts: Path, read_once) -> list[str]:
    """Call ``read_once(i)`` (an error message, or ``None``) at least ``READS`` times and
    until the writer has saved ``MIN_SAVES`` more checkpoints; the messages, in order."""
    first, i, failures = newest_step(ckpts), 0, []
    end = time.monotonic() + 300
    while i < READS or newest_step(ckpts) - first < MIN_SAVES:
        assert writer.poll() is None, "the training ended while it was read"
        assert time.monotonic() < end, f"{i} reads, the writer saved {newest_step(ckpts)}"
        failures += [m for m in [read_once(i)] if m is not None]
        i += 1
    return failures


def test_readers_of_a_run_follow_its_newest_checkpoint(running_training, tmp_path, capsys,
                                                       monkeypatch):
    _, start = running_training
    run = tmp_path / "run"
    (tmp_path / "src").write_text("3 1\n4\n")
    (tmp_path / "ref").write_text("three one\nfour\n")
    writer = _rotating_writer(start, run, "--eval-every", "1", "--keep-best", "1")

    def read_once(i: int) -> str | None:
        target = str(run / "best") if i % 3 == 2 else str(run)
        argv = (["translate", "--checkpoint", target, "--beam-size", "1"] if i % 2 else
                ["evaluate", "--checkpoint", target, "--src", str(tmp_path / "src"),
                 "--ref", str(tmp_path / "ref"), "--json"])
        code, text = _call(argv, capsys, monkeypatch)
        if code != 0:
            return text
        if argv[0] == "translate":
            assert text.count("\n") == 1, text  # one line (blank while it learns)
        else:
            assert "bleu" in json.loads(text), text
        return None

    assert _read_while_it_rotates(writer, run / "checkpoints", read_once) == []


def test_a_reader_of_a_checkpoint_folder_is_told_the_training_replaced_it(
        running_training, tmp_path, capsys, monkeypatch):
    _, start = running_training
    run = tmp_path / "run"
    writer = _rotating_writer(start, run)
    ckpts = run / "checkpoints"
    gone = latest_checkpoint(ckpts)
    wait_for(lambda: not gone.exists(), f"{gone.name} to be rotated away", writer)
    code, err = _call(["translate", "--checkpoint", str(gone)], capsys, monkeypatch)
    assert code == 2 and f"checkpoint not found: {gone}" in err
    assert "keeps only its last checkpoints" in err and "now holds step-" in err

    def read_once(i: int) -> str | None:  # the newest, named by its own folder
        code, text = _call(["translate", "--checkpoint", str(latest_checkpoint(ckpts))],
                           capsys, monkeypatch)
        return None if code == 0 else text

    for err in _read_while_it_rotates(writer, ckpts, read_once):
        lines = [x for x in err.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("attnkit translate: error: "), err
        assert ("was removed while it was being read: the training running on this run "
                "replaced it" in lines[0] or "checkpoint not found" in lines[0]), lines[0]
        assert "keeps only its last checkpoints" in lines[0], lines[0]
        assert "corrupt" not in lines[0] and "manifest" not in lines[0], lines[0]
