"""What opening a run reads: translating verifies and opens only the files it uses
(:data:`attnkit.runs.container.INFERENCE_FILES`), never the optimizer, scheduler and RNG
states (``state.safetensors``, twice the weights with Adam); resuming verifies those too.
Damage to a file a command reads is refused; damage to one it does not read is not its
concern."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

from attnkit.cli import main
from attnkit.runs import open_latest_run, open_run

from ._helpers import GOLDEN, three_step_run

STATE = ("state.safetensors", "state.json")
_opened: list[str] | None = None  # the paths opened while a test records them


def _audit(event: str, args: tuple) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], (str, os.PathLike)):
        _opened.append(os.path.realpath(args[0]))


sys.addaudithook(_audit)  # stays for the process; records only while _opened is a list


def _names_opened(run: Path, call) -> set[str]:
    """The base names of the files under ``run`` that ``call()`` opens (hashing a file
    opens it too)."""
    global _opened
    _opened = []
    try:
        assert call() == 0
    finally:
        opened, _opened = _opened, None
    inside = [p for p in opened if Path(p).is_relative_to(run.resolve())]
    assert inside, "nothing of the run was read"
    return {Path(p).name for p in inside}


def _damage(path: Path) -> None:
    """One byte of ``path`` changed, its size kept: only its SHA-256 tells."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return three_step_run(tmp_path / "run")


def _texts(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "src.txt").write_text("3 1 4\n2 7\n")
    (tmp_path / "ref.txt").write_text("three one four\ntwo seven\n")
    return tmp_path / "src.txt", tmp_path / "ref.txt"


def _commands(run: Path, tmp_path: Path) -> dict[str, list[str]]:
    src, ref = _texts(tmp_path)
    return {
        "translate": ["translate", "--checkpoint", str(run), "--threads", "1", "3 1 4"],
        "evaluate": ["evaluate", "--checkpoint", str(run), "--src", str(src), "--ref",
                     str(ref), "--threads", "1", "--average", "2", "--json"],
        "average": ["average", "--checkpoint", str(run), "--last", "2", "--out",
                    str(tmp_path / "avg")],
        "explore": ["explore", "--checkpoint", str(run), "--out", str(tmp_path / "x.html"),
                    "--src", "3 1 4"],
        "export": ["export", "ctranslate2", "--checkpoint", str(run), "--out",
                   str(tmp_path / "ct2"), "--force"],
    }


@pytest.mark.parametrize("command", ["translate", "evaluate", "average", "explore", "export"])
def test_translating_never_opens_the_training_states(run_dir, tmp_path, command, capsys):
    argv = _commands(run_dir, tmp_path)[command]
    opened = _names_opened(run_dir, lambda: main(argv))
    assert "model.safetensors" in opened and "manifest.json" in opened
    assert not opened & set(STATE), opened


def test_a_damaged_state_file_does_not_stop_a_translation(run_dir, tmp_path, capsys):
    ckpt = run_dir / "checkpoints" / "step-000003"
    _damage(ckpt / "state.safetensors")
    for argv in _commands(run_dir, tmp_path).values():
        assert main(argv) == 0, (argv, capsys.readouterr().err)
    capsys.readouterr()
    assert main(["translate", "--checkpoint", str(ckpt), "--threads", "1", "3 1 4"]) == 0
    assert capsys.readouterr().out.strip()


@pytest.mark.parametrize("name", STATE)
def test_resuming_still_refuses_a_damaged_state_file(run_dir, name):
    root = run_dir / "checkpoints"
    _damage(root / "step-000003" / name)
    latest, skipped = open_latest_run(root)  # what a training resumes from
    assert latest.path.name == "step-000002"
    assert skipped == [f"checkpoint {root / 'step-000003'} is corrupt: {name} "
                       "(size or sha256 differs)"]
    run = open_run(root / "step-000003")  # opened for translating: the states unread
    model = torch.nn.Linear(1, 1)
    with pytest.raises(ValueError, match=rf"step-000003 is corrupt: {name} \(size or sha256"):
        run.restore(model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))


def test_resuming_verifies_everything_once(run_dir, monkeypatch):
    from ._helpers import count_verifications

    calls = count_verifications(monkeypatch)
    latest, _ = open_latest_run(run_dir / "checkpoints")
    assert latest.verified is None  # every file, the states included
    run = open_run(run_dir)
    assert run.verified is not None and not set(run.verified) & set(STATE)
    assert [p.name for p in calls] == ["step-000003", "step-000003"]


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "tokenizer/tokenizer.json"])
def test_a_damaged_file_that_translating_reads_is_refused(tmp_path, capsys, name):
    ckpt = Path(shutil.copytree(GOLDEN, tmp_path / "c"))
    _damage(ckpt / name)
    assert main(["translate", "--checkpoint", str(ckpt), "--threads", "1", "3 1 4"]) == 2
    err = capsys.readouterr().err
    assert f"checkpoint {ckpt} is corrupt: {name} (size or sha256 differs)" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])
def test_a_file_translating_reads_must_be_listed(tmp_path, capsys, name):
    """A manifest that leaves out the weights (and a folder without them) is refused by
    name, not with a missing-file error from deep inside the loader."""
    import json

    ckpt = Path(shutil.copytree(GOLDEN, tmp_path / "c"))
    manifest = json.loads((ckpt / "manifest.json").read_text())
    del manifest["files"][name]
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    (ckpt / name).unlink()
    assert main(["translate", "--checkpoint", str(ckpt), "--threads", "1", "3 1 4"]) == 2
    err = capsys.readouterr().err
    assert f"is corrupt: {name} (not listed in manifest.json)" in err
