"""Runs that never wedge: a damaged head checkpoint is set aside, and a checkpoints folder
shared through links has one writer. Real ``attnkit train`` runs, real processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attnkit.cli import main
from attnkit.runs.checkpoint import list_checkpoints, verify_checkpoint

from .._data import digits_pairs_file

TINY = ["--data", "tsv", "--tokenizer", "word", "--num-hiddens", "16", "--num-heads", "2",
        "--ffn-num-hiddens", "32", "--num-encoder-layers", "1", "--num-decoder-layers", "1",
        "--warmup", "10", "--eval-every", "0", "--no-progress", "--device", "cpu",
        "--eval-sentences", "4", "--valid-size", "10", "--max-tokens", "400",
        "--max-sentence-tokens", "12", "--bf16", "false", "--threads", "1"]


def train_argv(pairs: Path, out: Path, *more: str) -> list[str]:
    return ["train", *TINY, "--train-path", str(pairs), "--out-dir", str(out), *more]


@pytest.fixture(scope="module")
def two_steps(tmp_path_factory) -> tuple[Path, Path]:
    """(pairs file, a run trained for 2 steps with a checkpoint at step 2)."""
    base = tmp_path_factory.mktemp("wedge")
    pairs = digits_pairs_file(base / "pairs.tsv")
    assert main(train_argv(pairs, base / "run", "--max-steps", "2")) == 0
    return pairs, base / "run"


def _lost_manifest(head: Path, older: Path) -> None:
    shutil.copytree(older, head)
    (head / "manifest.json").unlink()


def _empty_folder(head: Path, older: Path) -> None:
    head.mkdir()


def _a_file(head: Path, older: Path) -> None:
    head.write_bytes(b"not a checkpoint")


@pytest.mark.parametrize("damage", [_lost_manifest, _empty_folder, _a_file])
def test_an_unverifiable_head_checkpoint_is_set_aside_and_the_run_goes_on(
        two_steps, tmp_path, capsys, damage):
    pairs, trained = two_steps
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    ckpts = run / "checkpoints"
    damage(ckpts / "step-000004", ckpts / "step-000002")
    capsys.readouterr()
    code = main(train_argv(pairs, run, "--max-steps", "4", "--checkpoint-every", "2"))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "skipped: " in out and "step-000004" in out and "moved to step-000004.corrupt" in out
    assert "resumed from" in out and "at step 2" in out
    assert (ckpts / "step-000004.corrupt").exists()  # kept for inspection, never loaded
    assert [p.name for p in list_checkpoints(ckpts)][-1] == "step-000004"
    verify_checkpoint(ckpts / "step-000004")  # the step was saved again, whole
    code = main(train_argv(pairs, run, "--max-steps", "6", "--checkpoint-every", "2"))
    assert code == 0, capsys.readouterr().err  # and the run goes on from there
    assert "at step 4" in capsys.readouterr().out


def _wait_for(cond, what: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"the training ended before {what}: {proc.stdout.read()}")
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def running_training(tmp_path):
    """A real ``attnkit train`` on ``tmp_path/a`` that keeps going (killed at the end)."""
    pairs = digits_pairs_file(tmp_path / "pairs.tsv")
    procs = []

    def start(out: Path, *more: str) -> subprocess.Popen:
        argv = train_argv(pairs, out, "--max-steps", "100000", "--time-limit", "120", *more)
        proc = subprocess.Popen([sys.executable, "-c", "import sys; from attnkit.cli import "
                                 "main; sys.exit(main(sys.argv[1:]))", *argv],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(proc)
        return proc

    yield pairs, start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()


def test_runs_whose_checkpoints_are_links_to_one_folder_have_one_writer(
        running_training, tmp_path, capsys):
    pairs, start = running_training
    shared = tmp_path / "shared"
    shared.mkdir()
    runs = {name: tmp_path / name for name in "abc"}
    for run in runs.values():
        run.mkdir()
    os.symlink(shared, runs["a"] / "checkpoints")
    os.symlink(shared, runs["b"] / "checkpoints")  # a second run on the same folder
    os.symlink(runs["a"] / "checkpoints", runs["c"] / "checkpoints")  # a link to the link
    writer = start(runs["a"], "--checkpoint-every", "1")
    _wait_for(lambda: list_checkpoints(shared), "its first checkpoint", writer)
    for name in "bc":
        capsys.readouterr()
        code = main(train_argv(pairs, runs[name], "--max-steps", "100000"))
        out, err = capsys.readouterr()
        assert code == 2, out
        lines = [x for x in err.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("attnkit train: error: "), err
        assert f"is in use by another attnkit process (pid {writer.pid}" in lines[0]
        assert str(shared.resolve()) in lines[0]  # the real folder, which the runs share
        assert "resumed from" not in out
    writer.send_signal(signal.SIGKILL)  # the kernel drops its locks with the process
    writer.wait()
    code = main(train_argv(pairs, runs["b"], "--max-steps", str(_step(shared) + 1)))
    assert code == 0, capsys.readouterr().err  # the folder is free again
    assert "resumed from" in capsys.readouterr().out


def _step(root: Path) -> int:
    return int(list_checkpoints(root)[-1].name.split("-")[1])
