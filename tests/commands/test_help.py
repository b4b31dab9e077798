"""``attnkit --help`` and ``attnkit CMD --help`` list what there is without importing torch.

Each check runs in a fresh interpreter, so that no other test's imports count.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from attnkit.bench import SUITES, declared
from attnkit.cli import COMMANDS
from tests._fresh import run_fresh

_PROBE = """
import contextlib, io, sys
from attnkit.cli import main
out = io.StringIO()
for argv in {argvs!r}:
    try:
        with contextlib.redirect_stdout(out):
            main(argv)
    except SystemExit as e:
        assert e.code == 0, (argv, e.code)
    else:
        raise AssertionError(f"{{argv}}: --help did not exit")
heavy = sorted(m for m in ("torch", "numpy", "matplotlib") if m in sys.modules)
print(repr(heavy))
sys.stderr.write(out.getvalue())
"""


def _help(*argvs: list[str]) -> tuple[list[str], str]:
    """The heavy modules imported by ``main(argv)`` for each argv, and the help text."""
    r = subprocess.run([sys.executable, "-c", _PROBE.format(argvs=list(argvs))],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return eval(r.stdout.strip().splitlines()[-1]), r.stderr


def test_top_level_help_lists_every_command_without_torch():
    heavy, text = _help(["--help"])
    assert "torch" not in heavy
    for name, (_, help_text) in COMMANDS.items():
        assert name in text
        assert help_text.split()[0] in text


@pytest.mark.parametrize("command", list(COMMANDS))
def test_command_help_imports_no_torch(command):
    heavy, text = _help(["--help"], [command, "--help"])
    assert "torch" not in heavy, f"attnkit {command} --help imports {heavy}"
    assert f"usage: attnkit {command}" in text


def test_bench_help_lists_every_suite():
    _, text = _help(["bench", "--help"])
    for suite in SUITES:
        assert suite in text
    for suite in declared().values():  # its own help line, however argparse wraps it
        assert "".join(suite.help.split()) in "".join(text.split()), suite.name


@pytest.mark.parametrize("suite", list(SUITES))
def test_bench_suite_help_imports_no_torch(suite):
    heavy, text = _help(["bench", suite, "--help"])
    assert "torch" not in heavy, f"attnkit bench {suite} --help imports {heavy}"
    assert f"usage: attnkit bench {suite}" in text and "--record" in text
    assert "".join(declared()[suite].help.split()) in "".join(text.split())


def test_import_attnkit_is_lazy_and_every_public_name_resolves():
    code = ("import sys, attnkit; assert attnkit.__version__; "
            "assert 'torch' not in sys.modules, 'import attnkit loaded torch'; "
            "assert set(attnkit.__all__) <= set(dir(attnkit)); "
            "[getattr(attnkit, n) for n in attnkit.__all__]; "
            "from attnkit import Additive, masks; assert attnkit.nn.MultiHeadAttention; "
            "assert 'torch' in sys.modules")
    run_fresh(code)


def test_library_modules_hold_no_argparse():
    from pathlib import Path

    import attnkit

    root = Path(attnkit.__file__).parent
    library = [p for p in sorted(root.rglob("*.py"))
               if p.parent.name != "commands" and p.name != "cli.py"]
    assert root / "demo.py" in library and root / "viz" / "tour.py" in library
    for path in library:
        assert "argparse" not in path.read_text(), path
