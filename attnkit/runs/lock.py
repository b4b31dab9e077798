"""One writer per run directory: an exclusive lock held while a command writes there.

The lock is ``RUN/.lock``, taken with ``flock`` (an advisory lock of the
operating system). The kernel releases it when its process ends, however it
ends, so a lock left by a killed process is stale by construction: the next
writer takes it and says so. The file holds the holder's PID and command, for
the message a second writer gets.
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


class RunLock:
    """``with RunLock(run_dir): ...`` — or :meth:`acquire` / :meth:`release`.

    Raises:
        RunLockedError: another process (or another ``RunLock`` in this one)
            holds the lock; the message names its PID and command.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self._fd: int | None = None
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

    def acquire(self) -> RunLock:
        if self._fd is not None:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self._holder()
            raise RunLockedError(
                f"{self.directory} is in use by another attnkit process (pid "
                f"{holder.get('pid', '?')}: {holder.get('command', '?')}); wait for it to "
                "finish, or use another directory") from None
        previous = self._holder()
        if previous.get("pid") not in (None, os.getpid()):
            self.stale_holder = previous  # its process ended without unlocking
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(),
                                 "command": " ".join(sys.argv)[:500]}).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __del__(self) -> None:  # a lock object that is dropped frees its folder
        try:
            self.release()
        except OSError:
            pass

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
