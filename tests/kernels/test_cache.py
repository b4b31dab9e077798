"""Caching and loading the compiled CPU kernel (``attnkit/kernels/_cache.py``): damaged or
foreign cached files, unusable cache folders, processes and forks building at once.

Every test points ``ATTNKIT_CACHE_DIR`` at its own folder (``own_cache``). A library is
compiled once for the session (``built_cache``) and copied where a test only needs one in
its cache.
"""

from __future__ import annotations

import _ctypes
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from attnkit.kernels import _build, _cache

from ._builds import CALL, ROOT, SOURCE, fake_cc, files, make_foreign, needs_lib, run_call

pytestmark = pytest.mark.usefixtures("own_cache")


# -------------------------------------------------------------- the cache


@needs_lib
def test_built_once_then_loaded_from_the_cache(own_cache):
    first = _build._load(SOURCE)
    assert first.lib is not None and files(own_cache) == [".json", ".so"]
    (lib,) = own_cache.glob("*.so")
    stamp = lib.stat().st_mtime_ns
    again = _build._load(SOURCE)
    assert again.lib is not None and files(own_cache) == [".json", ".so"]
    assert lib.stat().st_mtime_ns == stamp  # not rebuilt
    assert again.detail.endswith(f"cached at {lib}")


@needs_lib
@pytest.mark.parametrize("keep", [100, 0.5], ids=["100-bytes", "half"])
def test_a_damaged_cached_library_is_built_again_never_loaded(cached, keep):
    """A cut file in the cache (a full disk, a killed copy): checked against its record
    before it is loaded, and built again. Half a library is mapped by the loader and kills
    the process with SIGBUS on the first call, so the calls run in other processes."""
    data = cached.read_bytes()
    cached.write_bytes(data[:keep if isinstance(keep, int) else len(data) // 2])
    done = run_call(dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert f"rebuilt: {cached} has" in done.stdout and cached.read_bytes() == data


@needs_lib
def test_a_foreign_library_under_the_cached_name_is_built_again(cached):
    """Another library (loadable, without the kernel's functions) in place of the cached
    one: its SHA-256 differs from the record, so it is never loaded."""
    shutil.copyfile(_ctypes.__file__, cached)
    built = _build._load(SOURCE)
    assert built.lib is not None and hasattr(built.lib, "attnkit_additive_scores")
    assert f"rebuilt: {cached} has" in built.detail


@needs_lib
def test_a_library_without_a_record_or_from_other_inputs_is_built_again(cached):
    record = cached.with_suffix(".json")
    record.write_text(record.read_text().replace('"flags"', '"flags_"'))
    assert f"rebuilt: {cached} was built from other inputs" in _build._load(SOURCE).detail
    record.unlink()
    assert f"rebuilt: {cached} has no record" in _build._load(SOURCE).detail


@needs_lib
@pytest.mark.parametrize("how", ["group-writable", "other-user"])
def test_a_library_others_could_have_written_is_not_loaded(cached, how):
    expect = make_foreign(cached, how)
    built = _build._load(SOURCE)
    assert built.lib is not None and f"rebuilt: {cached} {expect}" in built.detail
    st = cached.stat()
    assert st.st_uid == os.getuid() and not st.st_mode & 0o022


@needs_lib
def test_leftovers_of_killed_builds_are_removed_by_the_next_build(own_cache):
    own_cache.mkdir(parents=True, mode=0o700)
    dead = subprocess.Popen(["true"])
    dead.wait()
    of_dead = own_cache / f"additive_cpu-0123456789abcdef.{dead.pid}.x1.tmp"
    old = own_cache / ".additive_cpu-0123456789abcdef.json.x2.tmp"  # no pid: by its age
    alive = own_cache / f"additive_cpu-0123456789abcdef.{os.getppid()}.x3.tmp"
    for path in (of_dead, old, alive):
        path.write_bytes(b"\x7fELF")
    os.utime(old, (time.time() - _cache.STALE_S - 5,) * 2)
    assert _build._load(SOURCE).lib is not None
    assert not of_dead.exists() and not old.exists() and alive.exists()


def test_an_unwritable_cache_reuses_one_private_folder(monkeypatch, tmp_path):
    """A cache path below a file: every process builds in the same per-user folder of the
    temporary directory, private to the user, not in a new folder each."""
    monkeypatch.setenv("CC", "/bin/false")  # the folder is chosen before compiling
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("ATTNKIT_CACHE_DIR", str(blocker / "cache"))
    for _ in range(2):
        _build._load(SOURCE)
    made = list((tmp_path / "tmp").iterdir())
    assert [p.name for p in made] == [f"attnkit-kernels-{os.getuid()}"]
    assert made[0].stat().st_mode & 0o777 == 0o700


@needs_lib
def test_an_unwritable_cache_notes_where_it_built(monkeypatch, tmp_path):
    monkeypatch.setenv("ATTNKIT_CACHE_DIR", str(tmp_path / "a-file"))
    (tmp_path / "a-file").write_text("")  # the cache path is a file, not a folder
    built = _build._load(SOURCE)
    fallback = tmp_path / "tmp" / f"attnkit-kernels-{os.getuid()}"
    assert built.lib is not None and f"cached at {fallback}/" in built.detail
    assert f"{tmp_path / 'a-file' / 'kernels'} cannot be created (" in built.detail


def test_a_fallback_folder_others_can_write_is_not_used(monkeypatch, tmp_path):
    fallback = tmp_path / "tmp" / f"attnkit-kernels-{os.getuid()}"
    fallback.mkdir(mode=0o700)
    fallback.chmod(0o777)  # made by someone else, or open to them
    monkeypatch.setenv("ATTNKIT_CACHE_DIR", str(tmp_path / "a-file"))
    (tmp_path / "a-file").write_text("")
    built = _build._load(SOURCE)
    assert built.lib is None and f"and {fallback} is writable by group or others" in built.detail
    assert not list(fallback.iterdir())


@needs_lib
@pytest.mark.parametrize("how", ["group-writable", "other-user"])
def test_a_cache_folder_others_could_write_is_not_used(own_cache, how):
    own_cache.mkdir(parents=True, mode=0o700)
    expect = make_foreign(own_cache, how)
    built = _build._load(SOURCE)
    assert built.lib is not None and f"attnkit-kernels-{os.getuid()}/" in built.detail
    assert f"{own_cache} {expect}" in built.detail and ": built in " in built.detail
    assert not list(own_cache.iterdir())  # nothing written to, or loaded from, it


@needs_lib
def test_a_read_only_cache_with_a_valid_library_is_loaded(monkeypatch, cached, tmp_path):
    if os.getuid() == 0:  # root writes anywhere: the folder is read-only as far as it is told
        monkeypatch.setattr(_cache, "_writable", lambda folder: folder != cached.parent)
    cached.parent.chmod(0o500)
    try:
        built = _build._load(SOURCE)
    finally:
        cached.parent.chmod(0o700)
    assert built.lib is not None and built.detail.endswith(f"cached at {cached}; "
                                                           f"{cached.parent} is read-only: "
                                                           f"built in {tmp_path / 'tmp'}"
                                                           f"/attnkit-kernels-{os.getuid()}")
    assert not list((tmp_path / "tmp" / f"attnkit-kernels-{os.getuid()}").iterdir())


# -------------------------------------------------------------- concurrency


@needs_lib
def test_processes_building_at_once_all_get_a_whole_library(own_cache):
    """Four processes start on an empty cache together: each loads a working library,
    one is left with its record, and no temporary file."""
    procs = [subprocess.Popen([sys.executable, "-c", CALL], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}) for _ in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [e for _, e in outs]
    assert {o.split()[0] for o, _ in outs} == {"1.52319"}  # 2 tanh(1)
    assert files(own_cache) == [".json", ".so"]


@needs_lib
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this OS")
def test_a_fork_while_another_thread_builds_does_not_deadlock(monkeypatch, tmp_path):
    """A thread is inside a (slow) build when the main thread forks: the child's kernel
    path does not wait for a lock that no thread of the child will release."""
    gcc = shutil.which("gcc") or pytest.skip("no gcc")
    started = tmp_path / "started"
    monkeypatch.setenv("CC", str(fake_cc(tmp_path, f'touch {started}\nsleep 1\n'
                                                   f'exec {gcc} "$@"\n')))
    monkeypatch.setattr(_build, "_LOADED", {})
    builder = threading.Thread(target=_build.load, args=(SOURCE,))
    builder.start()
    while not started.exists():
        time.sleep(0.01)
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 with a library
        code = 1
        try:
            code = 0 if _build.load(SOURCE).lib is not None else 3
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    builder.join()
    assert done[0] == pid, "the forked child did not finish within 60 s"
    assert os.waitstatus_to_exitcode(done[1]) == 0


@needs_lib
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 flag sets")
def test_a_folder_in_the_way_of_the_record_is_a_failed_build_not_a_crash(cached):
    """Nothing can be stored under the first flag set's name: the next set is built."""
    record = cached.with_suffix(".json")
    record.unlink()
    record.mkdir()
    built = _build._load(SOURCE)
    assert built.lib is not None and "-mrecip" not in built.detail
    assert not list(cached.parent.glob("*.tmp"))
