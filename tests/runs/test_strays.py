"""Files a run did not write — a ``.DS_Store``, a note, an editor's backup, a folder — in a
checkpoint, in ``checkpoints/`` or in the run folder: never read, never a reason to call a
checkpoint corrupt. What loading does open must be listed in the manifest."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

from attnkit.cli import main
from attnkit.runs import (
    latest_verified_checkpoint,
    list_checkpoints,
    open_run,
    record_best,
    verify_checkpoint,
)
from attnkit.runs.retention import clean_leftovers

from ._helpers import GOLDEN, save_at, three_step_run
from ._writer import train_argv

STRAYS = (".DS_Store", "notes.txt", "config.json~", "sub/deeper.bin", "tokenizer/.DS_Store",
          "tokenizer/tokenizer.json~")


def _litter(ckpt: Path) -> None:
    """Each of :data:`STRAYS` in ``ckpt``, and a link out of it."""
    for name in STRAYS:
        (ckpt / name).parent.mkdir(parents=True, exist_ok=True)
        (ckpt / name).write_bytes(b"\x00 not the run's")
    os.symlink("/dev/zero", ckpt / "zero")


_opened: list[str] | None = None  # the paths opened while a test records them


def _audit(event: str, args: tuple) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], (str, os.PathLike)):
        _opened.append(os.path.realpath(args[0]))


sys.addaudithook(_audit)  # stays for the process; records only while _opened is a list


def test_unlisted_files_are_ignored_reported_and_never_opened(tmp_path):
    global _opened
    from attnkit.decode.translator import load_translator
    from attnkit.runs.container import unlisted_files

    ckpt = Path(shutil.copytree(GOLDEN, tmp_path / "c"))
    _litter(ckpt)
    assert verify_checkpoint(ckpt) == ckpt
    assert unlisted_files(ckpt) == sorted([".DS_Store", "config.json~", "notes.txt", "sub/",
                                           "tokenizer/.DS_Store", "tokenizer/tokenizer.json~",
                                           "zero"])
    listed = json.loads((ckpt / "manifest.json").read_text())["files"]
    _opened = []
    try:
        run = open_run(ckpt)
        translator = load_translator(run)
        run.restore(translator.model, restore_rng=False)
    finally:
        opened, _opened = _opened, None
    inside = {Path(p).relative_to(ckpt.resolve()).as_posix() for p in opened
              if Path(p).is_relative_to(ckpt.resolve())}
    assert inside and inside <= {*listed, "manifest.json"}, inside - set(listed)


@pytest.mark.parametrize("name, named", [
    ("tokenizer/tgt/tokenizer.json", "tokenizer/tgt"),  # named once, by its folder
    ("tokenizer/tgt/", "tokenizer/tgt"),  # even empty: the loader would look inside
    ("state.json", "state.json")])
def test_an_unlisted_file_where_loading_looks_is_not_ignored(tmp_path, name, named):
    """A target tokenizer beside a shared one would be loaded, and a container file the
    manifest leaves out would be read, unchecked: the checkpoint is corrupt."""
    ckpt = Path(shutil.copytree(GOLDEN, tmp_path / "c"))
    manifest = json.loads((ckpt / "manifest.json").read_text())
    if name == "state.json":  # the file stays; the manifest no longer vouches for it
        del manifest["files"][name]
        (ckpt / "manifest.json").write_text(json.dumps(manifest))
    elif name.endswith("/"):
        (ckpt / name).mkdir(parents=True)
    else:
        (ckpt / name).parent.mkdir(parents=True)
        shutil.copy(ckpt / "tokenizer" / "tokenizer.json", ckpt / name)
    with pytest.raises(ValueError, match=rf"is corrupt: {named} \(not listed in "
                                         r"manifest.json, and loading reads it\)"):
        verify_checkpoint(ckpt)


def test_a_listed_file_behind_a_linked_folder_lies_outside(tmp_path):
    ckpt = Path(shutil.copytree(GOLDEN, tmp_path / "c"))
    shutil.move(ckpt / "tokenizer", tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", ckpt / "tokenizer")  # same bytes, another place
    with pytest.raises(ValueError, match=r"tokenizer/tokenizer.json \(not a file inside the "
                                         r"checkpoint\)"):
        verify_checkpoint(ckpt)


def test_strays_in_checkpoints_and_the_run_folder_change_nothing(tmp_path):
    """Resume, retention, leftovers and ``RUN/best`` see the step-N folders only; a
    littered checkpoint is still the one to resume from."""
    run = three_step_run(tmp_path / "run")
    root = run / "checkpoints"
    _litter(root / "step-000003")
    for stray in (".DS_Store", "notes.txt", "step-abc/", "step-000002 copy/", "step-.tmp/",
                  "step-3.json"):
        (root / stray.rstrip("/")).mkdir() if stray.endswith("/") else \
            (root / stray).write_text("x")
    (run / ".DS_Store").write_text("x")
    (run / "notes.txt").write_text("x")
    before = sorted(p.name for p in root.iterdir())
    assert latest_verified_checkpoint(root, set_aside=True) == (root / "step-000003", [])
    assert open_run(run).path == root / "step-000003"
    assert open_run(run / "best").path == root / "step-000002"
    assert clean_leftovers(root) == []
    record_best(root, {"step": 3, "score": 0.5, "metric": "val_bleu"}, keep_best=1,
                keep_last=1)  # rotation: step 1 goes, 2 is the best, 3 the last
    assert [p.name for p in list_checkpoints(root)] == ["step-000002", "step-000003"]
    assert sorted(p.name for p in root.iterdir()) == [n for n in before if n != "step-000001"]


def test_when_none_verifies_nothing_is_set_aside(tmp_path):
    for step in (1, 2):
        ckpt = save_at(tmp_path, torch.nn.Linear(2, 2), step)
        (ckpt / "model.safetensors").write_bytes(b"changed")
    (tmp_path / "step-000003").mkdir()
    found, why = latest_verified_checkpoint(tmp_path, set_aside=True)
    assert found is None and len(why) == 3 and not any("moved" in w for w in why)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000001", "step-000002",
                                                          "step-000003"]


# ------------------------------------------------------------- a real attnkit train
def test_a_littered_checkpoint_is_resumed_from_at_its_step(two_steps, tmp_path, capsys):
    pairs, trained = two_steps
    run = Path(shutil.copytree(trained, tmp_path / "run", symlinks=True))
    root = run / "checkpoints"
    _litter(root / "step-000002")
    for stray in (".DS_Store", "notes.txt", "step-abc"):
        (root / stray).write_text("x")
    (run / ".DS_Store").write_text("x")
    capsys.readouterr()
    code = main(train_argv(pairs, run, "--max-steps", "4", "--checkpoint-every", "2"))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "resumed from" in out and "at step 2" in out and "skipped:" not in out
    assert f"note: {root / 'step-000002'} holds 7 file(s) its manifest does not list, " \
           "ignored: .DS_Store, config.json~, notes.txt, sub/" in out
    assert [p.name for p in list_checkpoints(root)] == ["step-000002", "step-000004"]
    assert not list(root.glob("*.corrupt*")) and (root / "step-000002" / "notes.txt").is_file()


def test_when_no_checkpoint_verifies_train_stops_and_moves_nothing(two_steps, tmp_path,
                                                                  capsys):
    """Starting again from step 0 would throw the run's progress away, silently."""
    pairs, trained = two_steps
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    root = run / "checkpoints"
    model = root / "step-000002" / "model.safetensors"
    model.write_bytes(model.read_bytes()[:-8])
    (root / "step-000003").mkdir()  # no manifest
    before = sorted(p.name for p in root.iterdir())
    capsys.readouterr()
    code = main(train_argv(pairs, run, "--max-steps", "4", "--checkpoint-every", "2"))
    out, err = capsys.readouterr()
    assert code == 2 and "resumed" not in out and "step 1 " not in out
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"attnkit train: error: cannot resume: none of the 2 "
                               f"checkpoint(s) under {root} verifies (")
    assert f"no manifest.json): {root / 'step-000003'}; checkpoint {root / 'step-000002'} " \
           "is corrupt: model.safetensors (size or sha256 differs)); nothing was moved or " \
           f"deleted. Repair them, or move them out of {root} to train this run again from " \
           "step 0, or start a new run in another directory with --out-dir" in lines[0]
    assert sorted(p.name for p in root.iterdir()) == before


def test_a_link_or_other_digits_named_step_n_is_no_checkpoint_of_the_run(tmp_path):
    """A link named ``step-N`` to another run's checkpoint is neither resumed from nor
    deleted through by rotation (which stopped the save with 'Cannot call rmtree on a
    symbolic link'); ``step-\\u0663`` (an Arabic-Indic three) is a stray, not step 3."""
    root, other = tmp_path / "checkpoints", tmp_path / "other"
    save_at(root, torch.nn.Linear(2, 2), 1)
    elsewhere = save_at(other, torch.nn.Linear(2, 2), 5)
    os.symlink(elsewhere, root / "step-000002")
    (root / "step-\u0663").mkdir()
    assert list_checkpoints(root) == [root / "step-000001"]
    save_at(root, torch.nn.Linear(2, 2), 4, keep_last=1)
    assert list_checkpoints(root) == [root / "step-000004"]
    assert (root / "step-000002").is_symlink() and verify_checkpoint(elsewhere) == elsewhere
    found, why = latest_verified_checkpoint(root)
    assert found == root / "step-000004" and why == []
    (root / "step-000004" / "model.safetensors").write_bytes(b"changed")
    found, why = latest_verified_checkpoint(root, set_aside=True)
    assert found is None and "not a folder, or a link" in why[-1]
    assert (root / "step-000002").is_symlink() and (root / "step-\u0663").is_dir()
