"""The trainer holds torch's thread count while it works and gives it back.

torch's setting is process-wide: a notebook that trains a model and then times something
else, or a program that trains twice, must find its own setting after ``fit`` (and after
a trainer that could not be made). The trainer holds the count it chose from when it is
made until :meth:`Trainer.close`, which ``fit`` calls when it ends; a later ``fit`` takes
it again. Every test starts from a count the trainer does not pick by itself (3)."""

from __future__ import annotations

import pytest
import torch

from attnkit.cli import main
from attnkit.train.trainer import Trainer

from ..conftest import START_THREADS
from .test_trainer import TINY_CLI, tiny


def test_fit_trains_on_its_threads_and_gives_the_count_back(three_threads, tmp_path):
    during = []
    trainer = Trainer(tiny(tmp_path, max_steps=2, threads=1), log=None)
    assert torch.get_num_threads() == 1 == trainer.threads.count  # held from construction
    trainer.fit(on_step=lambda t, out: during.append(torch.get_num_threads()))
    assert during == [1, 1]
    assert torch.get_num_threads() == START_THREADS
    trainer.cfg = trainer.cfg.replace(max_steps=3)  # a second fit holds the count again
    trainer.fit(on_step=lambda t, out: during.append(torch.get_num_threads()))
    assert during == [1, 1, 1] and torch.get_num_threads() == START_THREADS


def test_auto_is_chosen_when_made_and_given_back(three_threads, tmp_path):
    trainer = Trainer(tiny(tmp_path, max_steps=1, threads="auto"), log=None)
    assert torch.get_num_threads() == trainer.threads.count >= 1
    assert "cores" in trainer.threads.reason or "OMP_NUM_THREADS" in trainer.threads.reason
    trainer.close()
    assert torch.get_num_threads() == START_THREADS


def test_a_trainer_that_cannot_be_made_gives_the_count_back(three_threads, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises((ValueError, OSError)):
        Trainer(tiny(tmp_path, max_steps=1, threads=1, out_dir=str(blocker / "run")), log=None)
    assert torch.get_num_threads() == START_THREADS
    with pytest.raises(FileNotFoundError):  # set-up fails after the folder is taken
        Trainer(tiny(tmp_path, max_steps=1, threads=1, data="multi30k",
                     multi30k_root=str(tmp_path / "no-such-data")), log=None)
    assert torch.get_num_threads() == START_THREADS


def test_train_and_demo_commands_give_the_count_back(three_threads, tmp_path, capsys):
    assert main(["train", "--data", "dates", "--num-examples", "200", "--max-steps", "1",
                 "--threads", "1", "--out-dir", str(tmp_path / "run"), *TINY_CLI]) == 0
    assert torch.get_num_threads() == START_THREADS
    assert main(["demo", "--out", str(tmp_path / "demo"), "--max-steps", "1",
                 "--heldout", "2", "--threads", "1"]) == 0
    assert torch.get_num_threads() == START_THREADS


def test_trainers_closed_in_the_order_they_were_made_leave_the_open_ones_setting(
        three_threads, tmp_path):
    """Holds close in any order: closing the first of two trainers leaves the second's
    count (and the backends' pinning) in place; closing both gives back the count from
    before either."""
    from attnkit._cpu import pinning_allowed

    first = Trainer(tiny(tmp_path, max_steps=1, threads=1, out_dir=str(tmp_path / "a")), log=None)
    second = Trainer(tiny(tmp_path, max_steps=1, threads=2, out_dir=str(tmp_path / "b")), log=None)
    assert torch.get_num_threads() == 2 and pinning_allowed()
    first.close()
    assert torch.get_num_threads() == 2 and pinning_allowed()  # the second still holds its 2
    second.fit()
    assert torch.get_num_threads() == START_THREADS and not pinning_allowed()
