"""``attnkit plot curves`` on logs as they are found: a last line cut short by a training
still writing it, a broken record in the middle, NaN and Infinity values."""

from __future__ import annotations

import pytest

from attnkit.cli import main


def write_log(path, text: str):
    path.write_text(text)
    return str(path)


def test_a_cut_last_line_is_left_out_with_a_note(tmp_path, capsys):
    log = write_log(tmp_path / "metrics.jsonl",
                    '{"step": 1, "loss": 3.0}\n{"step": 2, "loss": 2.5}\n{"step": 3, "lo')
    assert main(["plot", "curves", "--log", log, "--out", str(tmp_path / "f")]) == 0
    err = capsys.readouterr().err
    assert "line 3 is incomplete" in err and len(err.splitlines()) == 1
    assert (tmp_path / "f" / "curves.png").stat().st_size > 0


def test_a_broken_record_in_the_middle_is_named_by_file_and_line(tmp_path, capsys):
    log = write_log(tmp_path / "metrics.jsonl",
                    '{"step": 1, "loss": 3.0}\n{"step": 2, "lo\n{"step": 3, "loss": 2.0}\n')
    assert main(["plot", "curves", "--log", log, "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"attnkit plot: error: {log}: line 2 is not a JSON record")
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_values_are_marked_not_dropped(tmp_path, value):
    from attnkit.viz.figures import figure_curves

    log = write_log(tmp_path / "metrics.jsonl",
                    f'{{"step": 1, "loss": 3.0}}\n{{"step": 2, "loss": {value}}}\n'
                    '{"step": 3, "loss": 2.0}\n')
    fig = figure_curves(log)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    shown = {"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}[value]
    assert f"loss={shown}" in texts


@pytest.mark.parametrize("make, says", [
    (lambda d: "/dev/zero", "--log: /dev/zero is not a regular file (it is a character device)"),
    (lambda d: str(d), "--log: {d} is a directory, expected a file"),
    (lambda d: str(d / "missing.jsonl"), "--log: no such file: {d}/missing.jsonl"),
    (lambda d: _binary(d / "bin.jsonl"),
     "{d}/bin.jsonl: line 2 is not UTF-8 text (byte 0xff)"),
], ids=["device", "folder", "missing", "binary"])
def test_a_log_that_is_not_a_log_is_one_line_naming_it(tmp_path, capsys, make, says):
    logs = tmp_path / "logs"
    logs.mkdir()
    code = main(["plot", "curves", "--log", make(logs), "--out", str(tmp_path / "f")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err == f"attnkit plot: error: {says.format(d=logs)}" or \
        err.startswith(f"attnkit plot: error: {says.format(d=logs)}"), err
    if "UTF-8" not in says:  # what the file is, checked before --out is made
        assert not (tmp_path / "f").exists()


def _binary(path) -> str:
    path.write_bytes(b'{"step": 1, "loss": 3.0}\n\xff\xfe\x00garbage\n')
    return str(path)
