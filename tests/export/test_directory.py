"""Export directories are whole or absent: ``export --force`` killed part-way (a real
SIGKILL to a real ``attnkit export`` process) keeps the earlier export; what a killed
export left is cleaned up; modes follow the user's umask; the library names its own
arguments, the command line its flags."""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attnkit.cli import main
from attnkit.export.directory import EXPORT_INFO, MANIFEST, ExportArgumentError, verify_export

from .conftest import GOLDEN

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ctranslate2") is None,
                                reason="ctranslate2 is not installed (attnkit[deploy])")

_CLI = "import sys; from attnkit.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture
def run(tmp_path) -> Path:
    """A copy of the golden checkpoint (a real run, 16 positions)."""
    return Path(shutil.copytree(GOLDEN, tmp_path / "run"))


def export(checkpoint: Path, out: Path, *more: str) -> subprocess.Popen:
    """A real ``attnkit export ctranslate2`` process."""
    argv = ["export", "ctranslate2", "--checkpoint", str(checkpoint), "--out", str(out), *more]
    return subprocess.Popen([sys.executable, "-c", _CLI, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def kill_while_building(checkpoint: Path, out: Path, *more: str) -> None:
    """SIGKILL an export to ``out`` the moment its unfinished folder appears beside
    ``out`` (any hidden ``.NAME.*`` entry); retried if the export finished first."""
    for _ in range(5):
        proc = export(checkpoint, out, *more)
        while proc.poll() is None:
            if any(n.startswith(f".{out.name}.") for n in os.listdir(out.parent)):
                proc.send_signal(signal.SIGKILL)
                break
        _, err = proc.communicate(timeout=120)
        if proc.returncode == -signal.SIGKILL:
            return
        assert proc.returncode == 0, err
    pytest.fail("every export finished before its folder was seen")


def test_force_killed_mid_export_keeps_the_earlier_export_and_the_next_one_cleans_up(
        run, tmp_path):
    out = tmp_path / "exports" / "ct2"
    assert main(["export", "ctranslate2", "--checkpoint", str(run), "--out", str(out)]) == 0
    before = {f: (out / f).read_bytes() for f in ("model.bin", EXPORT_INFO)}
    kill_while_building(run, out, "--force", "--quantization", "int8")
    assert out.is_dir(), "the earlier export was deleted before the new one was whole"
    verify_export(out)  # whole: every file matches its manifest
    if json.loads((out / EXPORT_INFO).read_text())["quantization"] != "int8":
        assert {f: (out / f).read_bytes() for f in before} == before  # the earlier one
    # (else the kill came after the swap: the new export, whole, is as good)
    done = export(run, out, "--force", "--quantization", "int8")
    assert done.wait(timeout=120) == 0, done.communicate()
    assert json.loads((out / EXPORT_INFO).read_text())["quantization"] == "int8"
    assert os.listdir(out.parent) == ["ct2"]  # nothing hidden left beside it


def test_a_kill_between_the_two_renames_is_undone_by_the_next_export(run, tmp_path, capsys):
    """The state that a kill between "old -> aside" and "new -> place" leaves: no export at
    ``out``, the earlier one aside, the new one whole beside it. The next export puts the
    earlier one back (and says it is there) before it does anything else."""
    out = tmp_path / "ct2"
    assert main(["export", "ctranslate2", "--checkpoint", str(run), "--out", str(out)]) == 0
    shutil.copytree(out, tmp_path / ".ct2.export-new")
    os.rename(out, tmp_path / ".ct2.export-old")
    assert main(["export", "ctranslate2", "--checkpoint", str(run), "--out", str(out)]) == 2
    assert "--out: " in (err := capsys.readouterr().err) and "pass --force to replace" in err
    verify_export(out)
    assert sorted(os.listdir(tmp_path)) == ["ct2", "run"]


@pytest.mark.parametrize("umask,dirs,files", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600),
                                              (0o002, 0o775, 0o664)])
def test_an_export_has_the_modes_of_the_users_umask(run, tmp_path, umask, dirs, files):
    """As a folder made with ``mkdir`` and files made with ``open``: with umask 022 another
    account (a server) can read the export, with 077 it cannot."""
    from attnkit.export import export_ctranslate2

    old = os.umask(umask)
    try:
        out = export_ctranslate2(run, tmp_path / "ct2")
    finally:
        os.umask(old)
    modes = {p.relative_to(out).as_posix(): p.stat().st_mode & 0o777
             for p in [out, *out.rglob("*")]}
    assert modes == {name: dirs if (out / name).is_dir() else files for name in modes}
    assert {"tokenizer/tokenizer.json", MANIFEST, "."} <= set(modes)


def test_the_library_names_its_arguments_and_the_command_line_its_flags(run, tmp_path,
                                                                          capsys):
    from attnkit.export import export_ctranslate2, load_ctranslate2

    with pytest.raises(ExportArgumentError, match=r"^quantization: must be one of float32, "
                                                  r"int16, int8; got 'int4'$"):
        export_ctranslate2(run, tmp_path / "ct2", quantization="int4")
    export_ctranslate2(run, tmp_path / "ct2")
    with pytest.raises(ValueError, match=r"^out: .*ct2 holds an earlier export; pass "
                                         r"force=True to replace it$"):
        export_ctranslate2(run, tmp_path / "ct2")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("mine")
    for out, message in ((tmp_path / "notes", "exists and is not empty"),
                         (tmp_path / "notes" / "mine.txt", "exists and is not a directory")):
        with pytest.raises(ValueError, match=rf"^out: {out} {message}"):
            export_ctranslate2(run, out, force=True)
    for missing in (tmp_path / "nothing", tmp_path / "notes"):
        with pytest.raises(OSError) as caught:
            load_ctranslate2(missing)
        assert "--" not in str(caught.value) and str(missing) in str(caught.value)
    assert main(["export", "ctranslate2", "--checkpoint", str(run), "--out",
                 str(tmp_path / "notes")]) == 2
    assert capsys.readouterr().err == (f"attnkit export ctranslate2: error: --out: "
                                       f"{tmp_path / 'notes'} exists and is not empty; "
                                       "choose a new directory\n")
    assert (tmp_path / "notes" / "mine.txt").read_text() == "mine"


def test_a_link_as_out_is_refused_and_its_target_kept(run, tmp_path):
    from attnkit.export import export_ctranslate2

    target = export_ctranslate2(run, tmp_path / "ct2")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(ValueError, match=r"^out: .*link is a symbolic link; name a directory"):
        export_ctranslate2(run, tmp_path / "link", force=True)
    verify_export(target)


def _waiting_for_a_lock(pid: int) -> bool:
    """Whether process ``pid`` is blocked on an ``flock`` (the kernel's /proc/locks)."""
    return any(line.split()[1] == "->" and line.split()[2] == "FLOCK"
               and line.split()[5] == str(pid)
               for line in Path("/proc/locks").read_text().splitlines())


@pytest.mark.skipif(not Path("/proc/locks").is_file(), reason="needs Linux's /proc/locks")
def test_an_export_waits_its_turn_and_leaves_a_build_in_progress_alone(run, tmp_path):
    """While another export builds in the folder (here the test holds the folder's flock,
    with that export's unfinished folder beside ``out``), a real export process waits
    (the kernel lists it as blocked on the lock) and touches nothing; once the turn is
    free it cleans up and exports."""
    out = tmp_path / "exports" / "ct2"
    building = tmp_path / "exports" / ".ct2.export-new"
    building.mkdir(parents=True)
    (building / "model.bin").write_bytes(b"half")
    fd = os.open(out.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        proc = export(run, out, "--force")
        deadline = time.time() + 120
        while not _waiting_for_a_lock(proc.pid):
            assert proc.poll() is None and time.time() < deadline, "the export did not wait"
            time.sleep(0.05)
        assert (building / "model.bin").read_bytes() == b"half" and not out.exists()
    finally:
        os.close(fd)
    assert proc.wait(timeout=120) == 0, proc.communicate()
    verify_export(out)
    assert os.listdir(out.parent) == ["ct2"]


@pytest.mark.parametrize("out", [".", "sub/..", "..", "/"])
def test_the_current_folder_and_those_holding_it_are_never_replaced(run, tmp_path, monkeypatch,
                                                                    out):
    """An empty folder at ``out`` is replaced like an export: never the one the user is
    in (``--out sub/..`` from an empty folder once renamed it away)."""
    from attnkit.export import export_ctranslate2

    here = tmp_path / "empty" / "here"
    here.mkdir(parents=True)
    monkeypatch.chdir(here)
    with pytest.raises(ValueError, match=rf"^out: {out} is the current folder or holds it"):
        export_ctranslate2(run, out)
    assert here.is_dir() and os.listdir(here) == [] and os.getcwd() == str(here)
