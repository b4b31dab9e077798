"""Where compiled libraries are kept, and which of them may be loaded.

A cached library is loaded only when it is what this process would build: a record
beside it (``<name>.json``, written atomically after the build) holds the inputs it was
built from and its size and SHA-256, and both are checked before ``ctypes`` maps the
file (a truncated library is mapped anyway and kills the process with SIGBUS on first
use). The library, its record and their folder must belong to this user and be writable
by no one else: a library runs with the rights of whoever loads it.

One process builds at a time per folder (an ``fcntl`` lock: held per process, so a
forked child never inherits it, and released by the kernel when its holder dies); the
others wait, then find the finished library. A build writes to a temporary file named
with its pid and renames it into place, so readers never see part of a file; the next
build removes the temporary files of dead processes and any older than ``STALE_S``.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .._io import sha256_of_file, write_atomic

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: builds are not serialised
    fcntl = None

__all__ = ["build", "check", "places", "uid"]

#: A temporary build output older than this (seconds) is a leftover whatever its pid says
#: (the pid may have been reused, or belong to another machine sharing the cache).
STALE_S = 600
#: How long to wait for another process's build before building beside it (renames keep
#: that safe; a stopped process must not stop every other one).
LOCK_WAIT_S = 180
_RECORD_MAX_BYTES = 1 << 16


def uid() -> int | None:
    """This process's user id (``None`` where the OS has none); tests replace it."""
    return os.getuid() if hasattr(os, "getuid") else None


def untrusted(path: Path, *, follow: bool = False) -> str | None:
    """Why ``path`` must not be used (``None``: it may): another owner, or writable by
    group or others. ``follow``: judge what a symbolic link points to."""
    st = os.stat(path) if follow else os.lstat(path)
    me = uid()
    if me is not None and st.st_uid != me:
        return f"{path} belongs to user {st.st_uid}, not to this user ({me})"
    if st.st_mode & 0o022:
        return f"{path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def _folder(folder: Path) -> tuple[bool, str]:
    """``(may be read, why it cannot be written)``, ``folder`` created (private) where
    missing; the reason is ``""`` when it can be, and says why when it cannot be read."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        return False, f"cannot be created ({e.strerror or e})"
    why = untrusted(folder, follow=True)
    if why is not None:
        return False, why.removeprefix(f"{folder} ")
    return True, "" if _writable(folder) else "is read-only"


def places(preferred: Path) -> tuple[list[tuple[Path, bool]], str]:
    """The folders to look in, each with whether builds may go there, and a note where
    ``preferred`` cannot be used as it is. A read-only ``preferred`` is still read; builds
    then go to one per-user folder in the temporary directory (not a new one per process)."""
    readable, why = _folder(preferred)
    if not why:
        return [(preferred, True)], ""
    found = [(preferred, False)] if readable else []
    fallback = Path(tempfile.gettempdir()) / f"attnkit-kernels-{uid()}"
    _, fallback_why = _folder(fallback)
    if not fallback_why:
        return found + [(fallback, True)], f"{preferred} {why}: built in {fallback}"
    return found, f"{preferred} {why}, and {fallback} {fallback_why}"


def _record(target: Path) -> Path:
    return target.with_suffix(".json")


def check(target: Path, inputs: dict) -> str | None:
    """``None`` where ``target`` is the library built from ``inputs``, whole and safe to
    load; else why not (``""``: there is none)."""
    if not os.path.lexists(target):
        return ""
    record = _record(target)
    try:
        for path in (target, record):
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                return f"{path} is not a regular file"
            why = untrusted(path)
            if why is not None:
                return why
        if st.st_size > _RECORD_MAX_BYTES:
            return f"{record} is too large to be its build record"
        kept = json.loads(record.read_bytes())
        size = os.lstat(target).st_size
        if not isinstance(kept, dict) or kept.get("inputs") != inputs:
            return f"{target} was built from other inputs"
        if kept.get("size") != size:
            return f"{target} has {size} bytes; its build wrote {kept.get('size')}"
        if kept.get("sha256") != sha256_of_file(target):
            return f"{target} differs from what its build wrote (SHA-256)"
    except FileNotFoundError:
        return f"{target} has no record of its build"
    except (OSError, ValueError) as e:
        return f"{target} or its record cannot be read ({e})"
    return None


def build(target: Path, inputs: dict, compile_to: Callable[[str], str | None]) -> str | None:
    """Build ``target`` with ``compile_to(path)`` (``None`` or why it failed) unless
    another process has built it meanwhile; ``None``, or the reason it could not be."""
    with _locked(target.parent):
        _remove_leftovers(target.parent)
        if check(target, inputs) is None:
            return None
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(dir=target.parent,
                                       prefix=f"{target.stem}.{os.getpid()}.", suffix=".tmp")
            os.close(fd)
            error = compile_to(tmp)
            if error is not None:
                return error
            os.chmod(tmp, 0o755)  # the linker's mode follows the umask: may be group-writable
            record = {"inputs": inputs, "size": os.path.getsize(tmp),
                      "sha256": sha256_of_file(Path(tmp))}
            os.replace(tmp, target)  # atomic; a process that mapped the old file keeps it
            write_atomic(_record(target), json.dumps(record, indent=1).encode())
            return None
        except OSError as e:  # a full disk, something in the way of the file or its record
            return f"the build could not be stored in {target.parent}: {e}"
        finally:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)


@contextlib.contextmanager
def _locked(folder: Path):
    """Hold the build lock of ``folder`` (a build without it where it cannot be taken)."""
    try:
        fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0),
                     0o600)
    except OSError:
        yield
        return
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        while fcntl is not None:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def _remove_leftovers(folder: Path) -> None:
    """Delete the temporary outputs of builds that died (pid gone) or are older than
    ``STALE_S``."""
    now = time.time()
    for path in folder.glob("*.tmp"):
        parts = path.name.split(".")
        pid = int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else None
        with contextlib.suppress(OSError):
            if (pid is not None and not _alive(pid)) or now - path.lstat().st_mtime > STALE_S:
                path.unlink()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except OSError:  # another user's process
        return True
    return True
