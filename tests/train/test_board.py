"""``[run] tensorboard``: a run's metrics.jsonl mirrored as TensorBoard events, read back
with TensorBoard's own reader; one value per step, across a resume too; the events on
disk however the run ends; one line when the package is missing."""

import sys

import numpy as np
import pytest

from attnkit.cli import main
from attnkit.train.board import BoardMirror, tag_of

from .test_trainer import TINY_CLI, Trainer, read_log, tiny
from .test_trainer_divergence import nan_loss_at

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator")


def events(run) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the run's event folder, as TensorBoard shows it: ``tag -> [(step,
    value)]`` (events that a resumed run purged left out)."""
    acc = event_accumulator.EventAccumulator(str(run / "tensorboard"),
                                             size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
            for tag in acc.Tags()["scalars"]}


def expected(records: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """What the events of ``records`` must be: each number at its step, in float32, the
    last record of a step for each key (a resumed run trains those steps again)."""
    out: dict[str, dict[int, float]] = {}
    for r in records:
        for key, value in r.items():
            if key != "step" and isinstance(value, (int, float)):
                out.setdefault(tag_of(key), {})[r["step"]] = float(np.float32(value))
    return {tag: sorted(by_step.items()) for tag, by_step in out.items()}


def test_the_events_hold_every_number_of_metrics_jsonl_at_its_step(tmp_path):
    cfg = tiny(tmp_path, max_steps=6, eval_every=3, checkpoint_every=0, tensorboard=True)
    Trainer(cfg, log=None).fit()
    run = tmp_path / "run"
    got, records = events(run), read_log(run / "metrics.jsonl")
    for tag in ("train/loss", "train/lr", "train/tokens_per_s", "train/grad_norm",
                "valid/loss", "valid/exact_match"):
        assert tag in got, sorted(got)
    assert got == expected(records)
    assert [s for s, _ in got["train/loss"]] == [1, 2, 3, 4, 5, 6]
    # validated at 3 and 6, and again at the end (step 6): one value per step
    assert sum("val_loss" in r for r in records) == 3
    assert [s for s, _ in got["valid/loss"]] == [3, 6]


def test_no_events_without_the_key(tmp_path):
    Trainer(tiny(tmp_path, max_steps=2, checkpoint_every=0), log=None).fit()
    assert not (tmp_path / "run" / "tensorboard").exists()


def test_a_resumed_run_continues_the_folder_with_one_value_per_step(tmp_path):
    kw = dict(max_steps=8, checkpoint_every=3, eval_every=4, tensorboard=True)

    class Killed(Exception):
        pass

    def kill_at_5(trainer, _):
        if trainer.step == 5:
            raise Killed

    with pytest.raises(Killed):  # steps 4 and 5 are written, then trained again
        Trainer(tiny(tmp_path, **kw), log=None).fit(on_step=kill_at_5)
    run = tmp_path / "run"
    assert [s for s, _ in events(run)["train/loss"]] == [1, 2, 3, 4, 5]  # closed: on disk
    resumed = Trainer(tiny(tmp_path, **kw), log=None)
    assert resumed.step == 3
    resumed.fit()
    records = read_log(run / "metrics.jsonl")
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4, 5, 4, 5, 6, 7, 8]
    got = events(run)
    assert [s for s, _ in got["train/loss"]] == list(range(1, 9))
    assert got == expected(records)  # the resumed run's values of steps 4 and 5
    assert len(list((run / "tensorboard").iterdir())) == 2


def test_the_events_are_on_disk_when_a_run_diverges(tmp_path):
    trainer = Trainer(tiny(tmp_path, max_steps=9, checkpoint_every=0, tensorboard=True),
                      log=None)
    nan_loss_at(trainer, 4)
    with pytest.raises(ValueError, match="training stopped at step 4"):
        trainer.fit()
    assert trainer._board is None  # closed
    got = events(tmp_path / "run")
    assert [s for s, _ in got["train/loss"]] == [1, 2, 3]
    assert got == expected(read_log(tmp_path / "run" / "metrics.jsonl"))


def test_the_mirror_skips_what_is_no_number_and_a_step_written_already(tmp_path):
    board = BoardMirror(tmp_path, first_step=1)
    board.add({"step": 1, "loss": 2.5, "note": "text", "flag": True, "val_bleu": 10})
    board.add({"step": 1, "loss": 9.0})  # the same step again: left out
    board.add({"step": 2, "loss": 1.5})
    board.close()
    assert events(tmp_path) == {"train/loss": [(1, 2.5), (2, 1.5)], "valid/bleu": [(1, 10.0)]}


ARGS = ["train", "--data", "dates", "--num-examples", "200", "--valid-size", "10",
        "--eval-sentences", "5", "--max-tokens", "600", *TINY_CLI, "--max-steps", "2",
        "--no-progress", "--device", "cpu", "--threads", "1"]


def test_without_the_package_the_command_says_how_to_get_it_before_training(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard fails
    out = tmp_path / "run"
    assert main([*ARGS, "--tensorboard", "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("attnkit train: error: tensorboard = true (--tensorboard) needs the "
                   "tensorboard package, which is not installed: "
                   'pip install "attnkit[tensorboard]"')
    assert not out.exists()  # nothing started
    with pytest.raises(OSError, match=r"pip install \"attnkit\[tensorboard\]\""):
        Trainer(tiny(tmp_path, max_steps=1, tensorboard=True), log=None)
    assert main([*ARGS, "--out-dir", str(out)]) == 0  # not needed without the key


def test_a_bad_value_of_the_flag_is_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main([*ARGS, "--tensorboard=yes", "--out-dir", str(tmp_path / "run")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "argument --tensorboard/--no-tensorboard: ignored explicit argument 'yes'" in err
    assert not (tmp_path / "run").exists()


def test_a_file_where_the_event_folder_goes_is_named_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "tensorboard").write_text("not a folder")
    assert main([*ARGS, "--tensorboard", "--out-dir", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"attnkit train: error: tensorboard: {out / 'tensorboard'} exists and is not a "
        "directory")
    assert not (out / "metrics.jsonl").exists()
