"""The command line under bad input and faults: one line per error, nothing lost, no hang."""

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attnkit.cli import main
from attnkit.runs import verify_checkpoint
from attnkit.runs.lock import RunLock

from .._data import digits_pairs_file
from ..runs._edit import edit_config

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "run-format-2"
TINY = ["--data", "tsv", "--tokenizer", "word", "--num-hiddens", "16", "--num-heads", "2",
        "--ffn-num-hiddens", "32", "--num-encoder-layers", "1", "--num-decoder-layers", "1",
        "--warmup", "10", "--eval-every", "0", "--no-progress", "--device", "cpu",
        "--eval-sentences", "4", "--valid-size", "10", "--max-tokens", "400",
        "--max-sentence-tokens", "12",
        "--bf16", "false", "--threads", "1"]  # the same numbers on every CPU kind


def pairs_file(path, n=200):
    return digits_pairs_file(path, n)


def run(argv, capsys, stdin: bytes | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str, command: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"attnkit {command}: error: "), err
    return lines[0]


@pytest.fixture
def train_args(tmp_path):
    return ["train", *TINY, "--train-path", str(pairs_file(tmp_path / "pairs.tsv")),
            "--out-dir", str(tmp_path / "run")]


# ----------------------------------------------------------------- line alignment
def test_translate_keeps_one_output_line_per_input_line(capsys, monkeypatch):
    text = "3 1\n\n4\x0c1 5\n9\x0b2\r\n6\u2028 5\n\r\n  \n3 5 8\rx\n7"
    code, out, err = run(["translate", "--checkpoint", str(GOLDEN), "--beam-size", "1"],
                         capsys, text.encode(), monkeypatch)
    assert code == 0, err
    outputs = out.split("\n")[:-1]
    inputs = text.split("\n")
    assert len(outputs) == len(inputs) == 9
    for i, o in zip(inputs, outputs):
        assert (o == "") == (i.strip() == ""), (i, o)  # blank in, blank out


def test_translate_reports_invalid_utf8_with_its_line(capsys, monkeypatch):
    code, out, err = run(["translate", "--checkpoint", str(GOLDEN)], capsys,
                         b"3 1\n4 \xff 1\n", monkeypatch)
    assert code == 2 and out == ""
    assert "stdin: line 2 is not valid UTF-8" in one_error_line(err, "translate")


def test_translate_says_which_sentences_were_cut(capsys, tmp_path):
    f = tmp_path / "in.txt"
    f.write_text("3 1\n" + " ".join(["4"] * 40) + "\n5\n")
    code, out, err = run(["translate", "--checkpoint", str(GOLDEN), "--input", str(f)], capsys)
    assert code == 0 and len(out.splitlines()) == 3
    assert "note: 1 of 3 sentences are longer than the model's positional table" in err
    assert "(lines 2)" in err


@pytest.mark.parametrize("argv, message", [
    (["--length-penalty", "nan"], "--length-penalty must be a finite number >= 0; got nan"),
    (["--beam-size", "0"], "--beam-size must be a positive int; got 0"),
    (["--max-output-len", "-3"], "--max-output-len must be a positive int; got -3"),
    (["--beam-stop", "exactly"], "--beam-stop must be one of 'exact', 'best_ended'; got "
                                 "'exactly' (did you mean 'exact'?)"),
    (["--input", "."], "is a directory, expected a file"),
    (["--input", "/no/such/file"], "no such file"),
])
def test_translate_rejects_values_that_make_no_sense(capsys, argv, message):
    code, _, err = run(["translate", "--checkpoint", str(GOLDEN), *argv, *(
        [] if "--input" in argv else ["3"])], capsys)
    assert code == 2 and message in one_error_line(err, "translate")


def test_evaluate_keeps_blank_lines_aligned(capsys, tmp_path):
    (tmp_path / "src").write_text("3 1\n\n5 9\n6\n")
    (tmp_path / "ref").write_text("three one\n\nfive nine\nsix\n")
    hyp = tmp_path / "hyp.txt"
    code, out, err = run(["evaluate", "--checkpoint", str(GOLDEN), "--src",
                          str(tmp_path / "src"), "--ref", str(tmp_path / "ref"),
                          "--beam-size", "1", "--hyp-out", str(hyp), "--json"], capsys)
    assert code == 0, err
    assert json.loads(out[out.index("{"):])["sentences"] == 4
    lines = hyp.read_text().split("\n")[:-1]
    assert len(lines) == 4 and lines[1] == "" and lines[0] and lines[3]


@pytest.mark.parametrize("extra, message", [
    (["--hyp-out", "."], "--hyp-out: . is a directory, expected a file name"),
    (["--limit", "-1"], "--limit must be a positive int; got -1"),
    (["--average", "-2"], "--average must be a non-negative int; got -2"),
    (["--length-penalty", "inf"], "--length-penalty must be a finite number"),
    (["--beam-stop", "early"], "--beam-stop must be one of 'exact', 'best_ended'; got "
                               "'early'"),
])
def test_evaluate_checks_its_arguments_before_decoding(capsys, tmp_path, extra, message):
    (tmp_path / "src").write_text("3\n")
    (tmp_path / "ref").write_text("three\n")
    code, _, err = run(["evaluate", "--checkpoint", str(GOLDEN), "--src", str(tmp_path / "src"),
                        "--ref", str(tmp_path / "ref"), *extra], capsys)
    assert code == 2 and message in one_error_line(err, "evaluate")


def test_evaluate_refuses_files_of_different_length(capsys, tmp_path):
    (tmp_path / "src").write_text("3\n4\n")
    (tmp_path / "ref").write_text("three\n")
    code, _, err = run(["evaluate", "--checkpoint", str(GOLDEN), "--src", str(tmp_path / "src"),
                        "--ref", str(tmp_path / "ref")], capsys)
    assert code == 2 and "has 2 lines" in one_error_line(err, "evaluate")


# ----------------------------------------------------------------- no silent nothing
def test_train_with_no_example_that_fits_is_an_error_not_a_hang(capsys, tmp_path,
                                                                 train_args):
    long = tmp_path / "long.tsv"
    long.write_text("".join(f"{i} {i} {i}\tx y z\n" for i in range(50)))
    for stop in (["--max-steps", "5"], ["--epochs", "1"]):
        t0 = time.time()
        code, _, err = run([*train_args, "--train-path", str(long), "--max-sentence-tokens",
                            "2", *stop], capsys)
        line = one_error_line(err, "train")
        assert code == 2 and "no training example fits: 0 of" in line
        assert "raise max_sentence_tokens (now 2)" in line and time.time() - t0 < 60


@pytest.mark.parametrize("content", [b"", b"\x00\xff\xfe binary", b"no tab here\nnor here\n"])
def test_train_on_a_file_without_pairs_names_the_file(capsys, tmp_path, train_args, content):
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(content)
    args = [*train_args, "--train-path", str(bad), "--max-steps", "2"]
    code, _, err = run(args, capsys)
    line = one_error_line(err, "train")
    assert code == 2 and "no training pair" in line and str(bad) in line


@pytest.mark.parametrize("flag, value, message", [
    ("--clip-norm", "-1", "--clip-norm must be a finite number > 0; got -1.0"),
    ("--device", "tpu", "device must be auto, cpu, cuda or cuda:N; got 'tpu'"),
    ("--max-len", "0", "must be a positive int; got 0"),
    ("--keep-last", "0", "--keep-last must be a positive int; got 0"),
])
def test_train_rejects_values_that_make_no_sense(capsys, train_args, flag, value, message):
    code, _, err = run([*train_args, flag, value, "--max-steps", "1"], capsys)
    assert code == 2 and message in one_error_line(err, "train")


def test_an_output_folder_that_is_a_file_is_found_before_training(capsys, tmp_path,
                                                                   train_args):
    (tmp_path / "taken").write_text("x")
    code, _, err = run([*train_args, "--out-dir", str(tmp_path / "taken"), "--max-steps", "1"],
                       capsys)
    assert code == 2 and "exists and is not a directory" in one_error_line(err, "train")
    assert main(["average", "--checkpoint", str(GOLDEN), "--out",
                 str(tmp_path / "taken")]) == 2


# ----------------------------------------------------------------- one writer
def test_a_run_folder_has_one_writer(capsys, tmp_path, train_args):
    with RunLock(tmp_path / "run"):
        code, _, err = run([*train_args, "--max-steps", "1"], capsys)
        line = one_error_line(err, "train")
        assert code == 2 and f"is in use by another attnkit process (pid {os.getpid()}" in line
        code, _, err = run(["average", "--checkpoint", str(GOLDEN), "--out",
                            str(tmp_path / "run")], capsys)
        assert code == 2 and "is in use" in one_error_line(err, "average")
    assert run([*train_args, "--max-steps", "1"], capsys)[0] == 0  # released


# ----------------------------------------------------------------- faults heal
def test_leftovers_are_cleaned_and_a_corrupt_checkpoint_is_skipped(capsys, train_args,
                                                                  tmp_path):
    assert run([*train_args, "--max-steps", "4", "--checkpoint-every", "2"], capsys)[0] == 0
    ckpts = tmp_path / "run" / "checkpoints"
    (ckpts / "step-000003.tmp").mkdir()
    (ckpts / "step-000001.deleting").mkdir()
    model = ckpts / "step-000004" / "model.safetensors"
    model.write_bytes(model.read_bytes()[:-8])  # truncated by a crash of the disk
    code, out, err = run([*train_args, "--max-steps", "5", "--checkpoint-every", "2"], capsys)
    assert code == 0, err
    assert "removed" in out and "step-000003.tmp" in out and "step-000001.deleting" in out
    assert "skipped: checkpoint" in out and "step-000004 is corrupt: model.safetensors" in out
    assert "resumed from" in out and "at step 2" in out
    assert not (ckpts / "step-000003.tmp").exists()
    assert not (ckpts / "step-000001.deleting").exists()


def test_checkpoints_are_data_not_instructions(tmp_path):
    ckpt = Path(shutil.copytree(GOLDEN, tmp_path / "c"))
    (ckpt / "extra.bin").write_bytes(b"x")  # not listed: never read, so ignored
    assert verify_checkpoint(ckpt) == ckpt
    (ckpt / "extra.bin").unlink()
    manifest = json.loads((ckpt / "manifest.json").read_text())
    for name in ("../../etc/passwd", "/dev/zero"):
        bad = dict(manifest, files={**manifest["files"], name: {"bytes": 1, "sha256": "0"}})
        (ckpt / "manifest.json").write_text(json.dumps(bad))
        with pytest.raises(ValueError, match="not a file inside the checkpoint"):
            verify_checkpoint(ckpt)
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    os.symlink("/dev/zero", ckpt / "zero")  # an unlisted link is never followed
    assert verify_checkpoint(ckpt) == ckpt
    os.symlink("/dev/zero", ckpt / "state.json~")
    (ckpt / "state.json").rename(ckpt / "real.json")
    os.symlink("/dev/zero", ckpt / "state.json")  # a listed name may not be a link
    with pytest.raises(ValueError, match=r"state.json \(not a file inside the checkpoint\)"):
        verify_checkpoint(ckpt)


def test_a_tokenizer_cannot_name_a_file_outside_its_folder(tmp_path, capsys):
    ckpt = Path(shutil.copytree(GOLDEN, tmp_path / "c"))
    spm_like = {"type": "sentencepiece", "format_version": 1, "model_file": "/dev/zero"}
    (ckpt / "tokenizer" / "tokenizer.json").write_text(json.dumps(spm_like))
    code, _, err = run(["translate", "--checkpoint", str(ckpt), "3"], capsys)
    assert code == 2 and "is corrupt: tokenizer/tokenizer.json" in one_error_line(
        err, "translate")
    edit_config(ckpt, lambda meta: None)  # re-sign everything: the manifest now agrees
    manifest = json.loads((ckpt / "manifest.json").read_text())
    data = (ckpt / "tokenizer" / "tokenizer.json").read_bytes()
    import hashlib

    manifest["files"]["tokenizer/tokenizer.json"] = {
        "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run(["translate", "--checkpoint", str(ckpt), "3"], capsys)
    assert code == 2 and "model_file must be a file name inside" in one_error_line(
        err, "translate")


@pytest.fixture
def small_disk(tmp_path):
    """A 400 KiB tmpfs: room for two checkpoints of the tiny model (~138 KB each), not three."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(disk)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], check=False)


def test_a_full_disk_stops_the_run_cleanly_and_keeps_the_last_checkpoint(capsys, small_disk,
                                                                         tmp_path):
    args = ["train", *TINY, "--train-path", str(pairs_file(tmp_path / "pairs.tsv")),
            "--out-dir", str(small_disk / "run"), "--checkpoint-every", "1", "--keep-last",
            "10", "--max-steps", "20", "--log-every", "5"]
    code, _, err = run(args, capsys)
    line = one_error_line(err, "train")
    assert code == 2 and "no space left on the device while writing checkpoint step" in line
    assert "the partial copy was removed" in line
    last = Path(line.rsplit("the last complete checkpoint is ", 1)[1])
    verify_checkpoint(last)
    ckpts = small_disk / "run" / "checkpoints"
    assert not list(ckpts.glob("*.tmp")) and not list(ckpts.glob("*.deleting"))
    assert main(["translate", "--checkpoint", str(small_disk / "run"), "3 1"]) == 0


def test_rotation_frees_space_before_it_is_needed(capsys, small_disk, tmp_path):
    args = ["train", *TINY, "--train-path", str(pairs_file(tmp_path / "pairs.tsv")),
            "--out-dir", str(small_disk / "run"), "--checkpoint-every", "1", "--keep-last",
            "2", "--max-steps", "12", "--log-every", "5"]
    code, _, err = run(args, capsys)
    assert code == 0, err
    names = sorted(p.name for p in (small_disk / "run" / "checkpoints").iterdir())
    assert names == ["step-000011", "step-000012"]


def test_explore_names_the_sentence_length_and_the_limit(capsys, tmp_path):
    code, _, err = run(["explore", "--checkpoint", str(GOLDEN), "--src", " ".join(["4"] * 40),
                        "--tgt", "four", "--out", str(tmp_path / "v.html")], capsys)
    line = one_error_line(err, "explore")
    assert code == 2 and "the source sentence has 41 tokens (with EOS)" in line
    assert "16 positions" in line
    code, _, err = run(["explore", "--checkpoint", str(GOLDEN), "--src", "3", "--out",
                        str(tmp_path)], capsys)
    assert code == 2 and "is a directory, expected a file name" in one_error_line(err, "explore")


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("terminal", [True, False])
def test_long_commands_show_progress_on_a_terminal_only(monkeypatch, tmp_path, terminal):
    f = tmp_path / "in.txt"
    f.write_text("3 1\n5\n" * 20)
    err = _Terminal() if terminal else io.StringIO()
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["translate", "--checkpoint", str(GOLDEN), "--input", str(f),
                 "--beam-size", "1"]) == 0
    assert len(out.getvalue().splitlines()) == 40
    shown = err.getvalue()
    assert ("translate" in shown and "/40" in shown and "sent/s" in shown) == terminal, shown
    assert terminal or shown == ""


def test_translate_stops_its_beams_by_the_rule_given(capsys, tmp_path):
    """``--beam-stop exact`` decodes with the exact bound and ``best_ended`` (the default)
    with CTranslate2's rule: the command's outputs are the library's for each."""
    from attnkit.decode.translator import load_translator

    f = tmp_path / "in.txt"
    sentences = ["3 1", "5 9 4", "6", "4 4 7 2"]
    f.write_text("".join(s + "\n" for s in sentences))
    tr = load_translator(GOLDEN)
    for rule in ("exact", "best_ended", None):
        code, out, err = run(["translate", "--checkpoint", str(GOLDEN), "--input", str(f),
                              "--beam-size", "3", *(["--beam-stop", rule] if rule else [])],
                             capsys)
        want = tr.translate(sentences, beam_size=3, stop=rule or "best_ended")
        assert code == 0 and out.splitlines() == want, err
