"""What the README tells a newcomer holds for this checkout.

The quick start's test command is the one CI runs; the CPU wheel it names is
the version ``constraints.txt`` pins; and every file or folder that the
README's ``attnkit`` commands write (their ``--out``/``--out-dir``, given or
by default, and the ``runs/`` they train into) is ignored by git, so that
following the README leaves ``git status`` clean.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from attnkit.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def bash_lines(markdown: str) -> list[str]:
    """The commands of the ```bash blocks, continuation lines joined."""
    blocks = re.findall(r"^```bash\n(.*?)^```", markdown, flags=re.S | re.M)
    return [line for block in blocks for line in block.replace("\\\n", " ").splitlines()
            if line.strip()]


def attnkit_calls(line: str) -> list[list[str]]:
    """The argument lists of the ``attnkit`` (or ``-m attnkit.cli``) calls on one line."""
    words = shlex.split(line, comments=True)
    calls, current = [], None
    for word in words:
        if word in ("|", "&&", ";"):
            current = None
        elif current is None and word in ("attnkit", "attnkit.cli"):
            current = []
            calls.append(current)
        elif current is not None:
            current.append(word)
    return calls


def written_paths(markdown: str) -> set[str]:
    """Relative paths the README's commands write: ``--out``/``--out-dir`` given or default,
    and every ``runs/…`` they name."""
    paths = set()
    for line in bash_lines(markdown):
        for argv in attnkit_calls(line):
            if not argv or argv[0] not in COMMANDS:
                continue
            args, _ = build_parser(argv[0]).parse_known_args(argv)
            paths |= {str(getattr(args, k)) for k in ("out", "out_dir")
                      if getattr(args, k, None)}
            paths |= {w.split("/")[0] + "/" + w.split("/")[1] for w in argv
                      if w.startswith("runs/") and "/" in w}
    return {p for p in paths if not Path(p).is_absolute()}


def test_the_readme_test_command_is_what_ci_runs():
    test_command = 'pip install -c constraints.txt -e ".[test]" && python -m pytest -q'
    assert test_command in bash_lines(README)
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert [line for line in ci if line and not line.startswith("#")][-1] == test_command


def test_the_cpu_wheel_named_is_the_pinned_torch():
    pinned = re.search(r"^torch==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M)[1]
    cpu = "--index-url https://download.pytorch.org/whl/cpu"
    assert f"pip install torch=={pinned} {cpu}" in bash_lines(README)


def test_the_readmes_outputs_are_found_in_its_commands():
    # the commands' own defaults count: explore writes view.html, plot writes figures/
    assert {"view.html", "deploy/de-en", "runs/multi30k-de-en", "attnkit-demo",
            "figures"} <= written_paths(README)


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                    reason="needs git and a git checkout")
def test_what_the_readmes_commands_write_is_ignored_by_git():
    """A path counts as ignored when it is (a file) or what it holds is (a folder)."""
    paths = sorted(written_paths(README))
    probes = paths + [f"{p}/a-file" for p in paths]
    ignored = set(subprocess.run(["git", "check-ignore", "--no-index", *probes], cwd=ROOT,
                                 capture_output=True, text=True).stdout.split())
    assert [p for p in paths if p not in ignored and f"{p}/a-file" not in ignored] == []
