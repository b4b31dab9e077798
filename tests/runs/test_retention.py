"""Tests for attnkit.runs.retention: which checkpoints a run keeps (rotation,
``keep_last``, ``best.json``) and what interrupted saves and damaged checkpoints leave
behind (incomplete folders, leftovers, heads set aside as corrupt)."""

from __future__ import annotations

import pytest
import torch

from attnkit.runs import (
    BEST,
    clean_leftovers,
    latest_checkpoint,
    latest_verified_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_best,
    record_best,
    resolve_checkpoint,
    trim_best,
)
from attnkit.runs import container as ckpt_mod

from ._helpers import make_model, save_at


def _save_linear(root, step, **kw):
    return save_at(root, torch.nn.Linear(2, 3), step, **kw)


# --------------------------------------------------------------- saves and rotation
def test_incomplete_directories_are_ignored(tmp_path, monkeypatch):
    model = make_model(0)
    save_at(tmp_path, model, 5)
    (tmp_path / "step-000010.tmp").mkdir()  # a crash during a save
    (tmp_path / "step-000010.tmp" / "model.safetensors").write_bytes(b"partial")
    (tmp_path / "step-000011").mkdir()  # no manifest: never complete
    (tmp_path / "notes").mkdir()
    assert latest_checkpoint(tmp_path) == tmp_path / "step-000005"
    assert list_checkpoints(tmp_path) == [tmp_path / "step-000005"]
    assert latest_checkpoint(tmp_path / "missing") is None

    # a save that dies before its manifest leaves only a .tmp directory
    real = ckpt_mod.write_atomic

    def dying(path, data):
        if path.name == ckpt_mod.MANIFEST:
            raise OSError("disk full")
        real(path, data)

    monkeypatch.setattr(ckpt_mod, "write_atomic", dying)
    with pytest.raises(OSError, match="disk full"):
        save_at(tmp_path, model, 20)
    # a save that fails removes its partial copy (a crash that kills the process leaves
    # the .tmp directory, which the next run removes: clean_leftovers)
    assert not (tmp_path / "step-000020.tmp").exists() and not (tmp_path / "step-000020").exists()
    assert latest_checkpoint(tmp_path) == tmp_path / "step-000005"
    monkeypatch.setattr(ckpt_mod, "write_atomic", real)
    save_at(tmp_path, model, 10)  # reuses the stale .tmp name
    assert latest_checkpoint(tmp_path) == tmp_path / "step-000010"
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        load_checkpoint(tmp_path / "step-000011", model=model)
    with pytest.raises(FileExistsError, match="step-000010"):
        save_at(tmp_path, model, 10)


def test_keep_last_prunes_oldest(tmp_path):
    model = make_model(0)
    for step in (1, 2, 3, 4):
        save_at(tmp_path, model, step, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000003", "step-000004"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000003", "step-000004"]



# ----------------------------------------------------- best.json and the checkpoint folder
def test_rotation_never_deletes_a_listed_checkpoint(tmp_path):
    for step in (1, 2, 3):
        _save_linear(tmp_path, step, keep_last=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000003"]
    best = record_best(tmp_path, {"step": 3, "score": 1.5, "metric": "val_bleu"},
                       keep_best=2, keep_last=1)
    assert best == [{"step": 3, "score": 1.5, "metric": "val_bleu"}]
    for step in (4, 5):
        _save_linear(tmp_path, step, keep_last=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000003", "step-000005"]
    record_best(tmp_path, {"step": 5, "score": 2.0, "metric": "val_bleu"}, keep_best=2,
                keep_last=1)
    _save_linear(tmp_path, 6, keep_last=1)
    best = record_best(tmp_path, {"step": 6, "score": 1.7, "metric": "val_bleu"},
                       keep_best=2, keep_last=1)
    assert [e["step"] for e in best] == [5, 6]  # 3 fell out and, not the last, is deleted
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000005", "step-000006"]
    with pytest.raises(ValueError, match="no checkpoint of step 9 under"):
        record_best(tmp_path, {"step": 9, "score": 3.0, "metric": "val_bleu"}, keep_best=2)
    with pytest.raises(ValueError, match="keep_best must be a positive int; got 0"):
        record_best(tmp_path, {"step": 6, "score": 3.0, "metric": "val_bleu"}, keep_best=0)


def test_a_stray_file_in_checkpoints_breaks_no_listing_resume_or_cleanup(tmp_path):
    for step in (1, 2):
        _save_linear(tmp_path, step)
    record_best(tmp_path, {"step": 1, "score": 0.5, "metric": "val_bleu"}, keep_best=1)
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / ".best.json.x1y2.tmp").write_text("[")  # a write_atomic cut short
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000001", "step-000002"]
    assert latest_verified_checkpoint(tmp_path) == (tmp_path / "step-000002", [])
    assert clean_leftovers(tmp_path) == []
    assert (tmp_path / BEST).is_file() and (tmp_path / "notes.txt").is_file()
    assert resolve_checkpoint(tmp_path) == tmp_path / "step-000002"
    assert resolve_checkpoint(tmp_path / "best") == tmp_path / "step-000001"


def test_trim_best_drops_entries_without_their_folder(tmp_path):
    for step in (1, 2, 3):
        _save_linear(tmp_path, step)
    for step, score in ((1, 0.1), (2, 0.3), (3, 0.2)):
        record_best(tmp_path, {"step": step, "score": score, "metric": "val_bleu"},
                    keep_best=3)
    (tmp_path / "step-000002").rename(tmp_path / "step-000002.corrupt")  # set aside
    assert [e["step"] for e in trim_best(tmp_path, keep_best=3, last_step=3)] == [3, 1]
    assert [e["step"] for e in read_best(tmp_path)] == [3, 1]
    assert trim_best(tmp_path, keep_best=0, last_step=3) == []
    assert not (tmp_path / BEST).exists()


@pytest.mark.parametrize("text", ["[", '{"step": 1}', '[{"step": -1, "score": 1, "metric": "x"}]',
                                  '[{"step": 1, "score": "high", "metric": "x"}]'])
def test_a_broken_best_json_is_named(tmp_path, text):
    (tmp_path / BEST).write_text(text)
    with pytest.raises(ValueError, match=str(tmp_path / BEST).replace("\\", "\\\\")):
        read_best(tmp_path)


# ---------------------------------------------------------- leftovers and damaged heads
def test_clean_leftovers_removes_interrupted_saves_and_rotations_only(tmp_path):
    _save_linear(tmp_path, 1)
    for name in ("step-000002.tmp", "step-000003.deleting", "notes.tmp", "step-x.deleting"):
        (tmp_path / name).mkdir()
    gone = clean_leftovers(tmp_path)
    assert sorted(p.name for p in gone) == ["step-000002.tmp", "step-000003.deleting"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tmp", "step-000001",
                                                          "step-x.deleting"]
    assert clean_leftovers(tmp_path / "missing") == []


def test_damaged_heads_are_skipped_with_a_reason_and_set_aside_only_when_asked(tmp_path):
    _save_linear(tmp_path, 1)
    corrupt = _save_linear(tmp_path, 2)
    (corrupt / "model.safetensors").write_bytes(b"changed")
    (tmp_path / "step-000003").mkdir()  # no manifest
    (tmp_path / "step-000004").write_text("not a folder")
    found, why = latest_verified_checkpoint(tmp_path)
    assert found == tmp_path / "step-000001" and len(why) == 3
    assert "not a folder" in why[0] and "step-000003" in why[1] and "is corrupt" in why[2]
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000001", "step-000002"]
    found, why = latest_verified_checkpoint(tmp_path, set_aside=True)
    assert found == tmp_path / "step-000001"
    assert [w.rsplit("; ", 1)[1] for w in why] == [
        "moved to step-000004.corrupt", "moved to step-000003.corrupt",
        "moved to step-000002.corrupt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step-000001", "step-000002.corrupt", "step-000003.corrupt", "step-000004.corrupt"]
    _save_linear(tmp_path, 2)  # the step can be saved again
    (tmp_path / "step-000002" / "model.safetensors").write_bytes(b"changed")
    latest_verified_checkpoint(tmp_path, set_aside=True)
    assert (tmp_path / "step-000002.corrupt1").is_dir()  # the first one set aside is kept
