import subprocess
import sys
import types

import pytest

from attnkit.cli import COMMANDS, main


def test_console_script_help_lists_commands():
    r = subprocess.run([sys.executable, "-m", "attnkit.cli", "--help"], capture_output=True,
                       text=True, check=True)
    for cmd in ("demo", "cost", "tour"):
        assert cmd in r.stdout


def test_bad_option_value_is_a_clear_error(capsys):
    try:
        main(["cost", "--valid-lens", "3d"])
    except SystemExit as e:
        assert e.code == 2
    assert "invalid choice: '3d'" in capsys.readouterr().err


def test_plot_names_match_the_figures():
    from attnkit.commands.plot import FIGURE_NAMES
    from attnkit.viz.figures import FIGURES

    assert sorted(FIGURE_NAMES) == sorted(FIGURES)


def test_a_bad_value_is_one_line_on_stderr_and_exit_2(capsys):
    assert main(["cost", "--batch", "0"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "attnkit cost: error: batch must be a positive int; got 0\n"
    assert captured.out == ""


def _raising(exc: BaseException) -> types.ModuleType:
    module = types.ModuleType("attnkit_test_raising")
    module.add_cli_arguments = lambda p: None

    def run_cli(args):
        raise exc

    module.run_cli = run_cli
    return module


@pytest.mark.parametrize("exc, message", [
    (ValueError("lines must be\n  one"), "lines must be one"),
    (TypeError("beam_size must be an int"), "beam_size must be an int"),
    (FileNotFoundError(2, "No such file or directory", "in.txt"),
     "in.txt: No such file or directory"),
    (IsADirectoryError(21, "Is a directory", "runs"), "runs: Is a directory"),
    (PermissionError(13, "Permission denied", "/root/x"), "/root/x: Permission denied"),
    (OSError("the GPU benchmark needs a CUDA device"), "the GPU benchmark needs a CUDA device"),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
     "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"),
])
def test_user_errors_become_one_line_and_exit_2(monkeypatch, capsys, exc, message):
    monkeypatch.setitem(sys.modules, "attnkit_test_raising", _raising(exc))
    monkeypatch.setitem(COMMANDS, "raising", ("attnkit_test_raising", "raises"))
    assert main(["raising"]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"attnkit raising: error: {message}\n"


def test_ctrl_c_exits_130_with_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "attnkit_test_raising", _raising(KeyboardInterrupt()))
    monkeypatch.setitem(COMMANDS, "raising", ("attnkit_test_raising", "raises"))
    assert main(["raising"]) == 130
    assert capsys.readouterr().err == "attnkit raising: interrupted\n"


def test_a_bug_is_not_hidden(monkeypatch):
    monkeypatch.setitem(sys.modules, "attnkit_test_raising", _raising(KeyError("x")))
    monkeypatch.setitem(COMMANDS, "raising", ("attnkit_test_raising", "raises"))
    with pytest.raises(KeyError):
        main(["raising"])


def test_python_m_attnkit_cli_bench_lists_the_suites():
    r = subprocess.run([sys.executable, "-m", "attnkit.cli", "bench", "--help"],
                       capture_output=True, text=True, check=True)
    assert "usage: attnkit bench" in r.stdout and "throughput" in r.stdout
