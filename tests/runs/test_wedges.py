"""Runs that never wedge: a damaged head checkpoint is set aside, and a checkpoints folder
shared through links has one writer. Real ``attnkit train`` runs, real processes."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from attnkit.cli import main
from attnkit.runs import list_checkpoints, verify_checkpoint

from ._writer import newest_step, train_argv, wait_for


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
    wait_for(lambda: list_checkpoints(shared), "its first checkpoint", writer)
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
    code = main(["average", "--checkpoint", str(runs["a"]), "--out", str(shared)])
    # nor writes there: the folder holds what average reads, refused before any lock is asked
    assert code == 2 and "holds --checkpoint" in capsys.readouterr().err
    assert list_checkpoints(shared) and not any(p.name == "manifest.json" for p in shared.iterdir())
    writer.send_signal(signal.SIGKILL)  # the kernel drops its locks with the process
    writer.wait()
    code = main(train_argv(pairs, runs["b"], "--max-steps", str(newest_step(shared) + 1)))
    assert code == 0, capsys.readouterr().err  # the folder is free again
    assert "resumed from" in capsys.readouterr().out
