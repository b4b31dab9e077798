"""Every command that writes files refuses an output that is one of its inputs, reached by
any spelling (the same path, a symbolic or hard link, ``./``), or that lies inside (or,
for a folder it fills or replaces, holds) an input folder, before anything is written:
the inputs keep their bytes."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from attnkit.cli import main

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "run-format-2"


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    """A source, a reference, a training log and a checkpoint in the working folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "src.txt").write_text("3 1 4\n2 7\n")
    (tmp_path / "ref.txt").write_text("4 1 3\n7 2\n")
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 2.5}\n{"step": 2, "loss": 2}\n')
    (tmp_path / "pairs.tsv").write_text("".join(f"{i} {i + 1}\t{i + 1} {i}\n" for i in range(40)))
    shutil.copytree(GOLDEN, tmp_path / "run" / "ckpt")
    return tmp_path


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def alias(root: Path, target: str, kind: str, at: str = "alias") -> str:
    """A path naming ``root/target`` in the way ``kind`` says."""
    if kind == "same":
        return str(root / target)
    if kind == "dot":
        return f"./{target}"
    link = root / at
    link.parent.mkdir(parents=True, exist_ok=True)
    if kind == "symlink":
        link.symlink_to(root / target)
    else:
        os.link(root / target, link)
    return str(link)


CKPT = ["--checkpoint", "run/ckpt"]
EVALUATE = ["evaluate", *CKPT, "--src", "src.txt", "--ref", "ref.txt", "--beam-size", "1"]
TRAIN = ["train", "--data", "tsv", "--train-path", "pairs.tsv", "--max-steps", "1",
         "--threads", "1"]
CASES = {  # name: (argv before the output path, output flag, target, can be hard-linked)
    "evaluate --hyp-out = --src": (EVALUATE, "--hyp-out", "src.txt", True),
    "evaluate --hyp-out = --ref": (EVALUATE, "--hyp-out", "ref.txt", True),
    "evaluate --hyp-out in the checkpoint": (EVALUATE, "--hyp-out", "run/ckpt/model.safetensors",
                                             True),
    "average --out = checkpoint": (["average", *CKPT, "--last", "2"], "--out", "run/ckpt",
                                   False),
    "export --out = checkpoint": (["export", "ctranslate2", *CKPT], "--out", "run/ckpt", False),
    "export --out holds the checkpoint": (["export", "ctranslate2", *CKPT, "--force"], "--out",
                                          "run", False),
    "explore --out in the checkpoint": (["explore", *CKPT, "--src", "3 1"], "--out",
                                        "run/ckpt/config.json", True),
    "plot --out = --log": (["plot", "curves", "--log", "metrics.jsonl"], "--out",
                           "metrics.jsonl", True),
    "train --out-dir = --train-path": (TRAIN, "--out-dir", "pairs.tsv", True),
}
KINDS = ("same", "symlink", "hardlink", "dot")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", list(CASES))
def test_an_output_that_is_an_input_is_refused_before_writing(inputs, capsys, case, kind):
    argv, flag, target, linkable = CASES[case]
    if kind == "hardlink" and not linkable:
        pytest.skip("folders have no hard links")
    out = alias(inputs, target, kind)
    before = digests(inputs)
    assert main([*argv, flag, out]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag in err, err
    assert any(w in err for w in ("is the same file as", "is inside", "hard link", "holds")), err
    assert digests(inputs) == before


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_a_figure_file_that_is_the_log_is_refused(inputs, capsys, kind):
    alias(inputs, "metrics.jsonl", kind, at="figures/curves.svg")
    before = digests(inputs)
    assert main(["plot", "curves", "--log", "metrics.jsonl", "--out", "figures"]) == 2
    assert "--out is the same file as --log" in capsys.readouterr().err
    assert digests(inputs) == before


def test_an_output_beside_its_inputs_is_written(inputs, capsys):
    assert main(["plot", "curves", "--log", "metrics.jsonl", "--out", "."]) == 0
    assert (inputs / "curves.png").is_file()
    assert main([*EVALUATE, "--hyp-out", "hyp.txt"]) == 0
    assert len((inputs / "hyp.txt").read_text().splitlines()) == 2


@pytest.mark.parametrize("out_dir, data, what", [
    (".", "metrics.jsonl", "--out-dir's metrics.jsonl"),   # the log it appends to
    ("run", "run/checkpoints/pairs.tsv", "--out-dir's checkpoints/"),  # rotated away
], ids=["log", "checkpoints"])
def test_train_refuses_a_run_folder_that_would_write_over_its_data(inputs, capsys, out_dir,
                                                                   data, what):
    (inputs / data).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(inputs / "pairs.tsv", inputs / data)
    before = digests(inputs)
    assert main([*TRAIN[:3], "--train-path", data, *TRAIN[5:], "--out-dir", out_dir]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and what in err and "--train-path" in err, err
    assert digests(inputs) == before
