"""One writer per run directory: an exclusive lock held while a command writes there.

The lock is ``RUN/.lock``, taken with ``flock`` (an advisory lock of the
operating system). The kernel releases it when its process ends, however it
ends, so a lock left by a killed process is stale by construction: the next
writer takes it and says so. The file holds the holder's PID and command, for
the message a second writer gets.

A run's ``checkpoints/`` may be a link, and two runs may link to one folder. So a
writer also locks the real folder its checkpoints go to (the folder itself, with
``flock`` on the directory: no file is added beside the checkpoints), found by
resolving every link; the holder of that lock is read from ``/proc/locks``.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path

__all__ = ["LOCK_FILE", "RunLock", "RunLockedError"]

LOCK_FILE = ".lock"


class RunLockedError(OSError):
    """Another process holds the run directory's lock."""


def _locked(fd: int) -> bool:
    """Take the exclusive lock on ``fd`` without waiting; ``False`` when another holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(*fds: int | None) -> None:
    for fd in fds:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _flock_holder(fd: int) -> dict:
    """``{"pid", "command"}`` of the process holding a ``flock`` on ``fd``'s file, from
    Linux's ``/proc/locks`` (``{}`` where that cannot be read)."""
    st = os.fstat(fd)
    file_id = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return {}
    for line in lines:  # "1: FLOCK  ADVISORY  WRITE 4242 00:2d:1234 0 EOF"
        f = line.split()
        if len(f) > 5 and f[1] == "FLOCK" and f[5] == file_id and f[4].isdigit():
            try:
                cmd = Path(f"/proc/{f[4]}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                cmd = b"?"
            return {"pid": int(f[4]), "command": cmd.decode(errors="replace").strip()[:500]}
    return {}


class RunLock:
    """``with RunLock(run_dir): ...`` — or :meth:`acquire` / :meth:`release`.

    Args:
        directory: the run folder; ``directory/.lock`` is the lock file.
        checkpoints: a sub-folder (``"checkpoints"`` for a training run) whose real
            folder, links resolved, is locked as well; created if needed.

    Raises:
        RunLockedError: another process (or another ``RunLock`` in this one)
            holds the lock; the message names its PID and command.
    """

    def __init__(self, directory: str | Path, *, checkpoints: str | None = None) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self.checkpoints = checkpoints
        self._fd: int | None = None
        self._dir_fd: int | None = None  # the real checkpoints folder, locked
        self.stale_holder: dict | None = None  # what a dead holder left in the file

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _holder(self) -> dict:
        try:
            info = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    @staticmethod
    def _in_use(what: str, holder: dict) -> RunLockedError:
        return RunLockedError(
            f"{what} is in use by another attnkit process (pid {holder.get('pid', '?')}: "
            f"{holder.get('command', '?')}); wait for it to finish, or use another directory")

    def acquire(self) -> RunLock:
        if self._fd is not None:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _locked(fd):
            os.close(fd)
            raise self._in_use(str(self.directory), self._holder()) from None
        previous = self._holder()
        self._fd = fd
        try:
            self._dir_fd = self._lock_checkpoints()
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(),
                                     "command": " ".join(sys.argv)[:500]}).encode())
        except BaseException:
            _unlock(fd, self._dir_fd)
            self._fd = self._dir_fd = None
            raise
        if previous.get("pid") not in (None, os.getpid()):
            self.stale_holder = previous  # its process ended without unlocking
        return self

    def _lock_checkpoints(self) -> int | None:
        """A descriptor holding the lock on the real checkpoints folder (``None``: none)."""
        if self.checkpoints is None:
            return None
        named = self.directory / self.checkpoints
        real = named.resolve()  # another run may name the same folder through a link
        real.mkdir(parents=True, exist_ok=True)
        fd = os.open(real, os.O_RDONLY | os.O_DIRECTORY)
        if not _locked(fd):
            holder = _flock_holder(fd)
            os.close(fd)
            raise self._in_use(f"{named} (the folder {real})", holder) from None
        return fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        dir_fd, self._dir_fd = self._dir_fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            _unlock(fd, dir_fd)

    def __del__(self) -> None:  # a lock object that is dropped frees its folder
        try:
            self.release()
        except OSError:
            pass

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
