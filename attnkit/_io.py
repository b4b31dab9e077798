"""Small file helpers shared by the layers that write to disk."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

MAX_JSON_BYTES = 64 << 20  # metadata files are small; a larger one is not ours

__all__ = ["MAX_JSON_BYTES", "check_not_an_input", "check_regular_file", "check_writable_file",
           "ensure_writable_dir", "file_digest", "file_kind", "is_own_folder", "json_bytes",
           "read_json", "sha256_of_file", "write_atomic"]


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """The ``hashlib`` digest ``algorithm`` of the file at ``path``, as hex (read in
    blocks: checkpoints and archives are large)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_of_file(path: Path) -> str:
    """The SHA-256 of the file at ``path``, as hex."""
    return file_digest(path, "sha256")


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync, then ``os.replace``.

    Readers see either the old file or the whole new one, never a partial write.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_json(path: Path, *, missing: Exception, format_version: int | None = None) -> dict:
    """The JSON object in ``path``; ``missing`` is raised when there is no such file.

    Raises:
        ValueError: the file is not a JSON object in UTF-8, or its
            ``"format_version"`` is not ``format_version`` (when given).
    """
    if not path.is_file():
        raise missing
    if path.stat().st_size > MAX_JSON_BYTES:
        raise ValueError(f"{path}: {path.stat().st_size} bytes, more than a metadata file may "
                         f"hold ({MAX_JSON_BYTES})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    if format_version is not None and data.get("format_version") != format_version:
        raise ValueError(f"{path}: format_version must be {format_version}, "
                         f"got {data.get('format_version')!r}")
    return data


def json_bytes(obj: Any) -> bytes:
    """``obj`` as the UTF-8 bytes of an indented JSON file that :func:`read_json` reads.

    Raises:
        TypeError: ``obj`` holds something JSON cannot hold.
        ValueError: ``obj`` holds a NaN or an infinity (JSON has none).
    """
    return json.dumps(obj, indent=1, ensure_ascii=False, allow_nan=False).encode("utf-8")


def ensure_writable_dir(path: str | Path, name: str) -> Path:
    """The directory ``path``, created if needed and checked writable by writing a probe.

    Called before long work, so that an output directory that is a file,
    read-only or on a full disk is found before anything is computed.

    Raises:
        OSError: with a message naming ``name`` (the flag or field) and the path.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise NotADirectoryError(f"{name}: {p} exists and is not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=p, prefix=".attnkit-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OSError(e.errno, f"{name}: cannot write to {p}: {e.strerror or e}") from None
    return p


def check_writable_file(path: str | Path, name: str) -> Path:
    """``path`` if a file can be written there (its folder is created and probed)."""
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"{name}: {p} is a directory, expected a file name")
    ensure_writable_dir(p.parent if str(p.parent) else Path("."), name)
    return p


_KINDS = ((stat.S_ISREG, "regular file"), (stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"),
          (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
          (stat.S_ISSOCK, "socket"))


def file_kind(path: str | Path) -> str | None:
    """What ``path`` is, links followed: ``"regular file"``, ``"directory"``, ``"FIFO"``,
    ``"character device"`` ... or ``None`` when nothing is there."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    return next((word for test, word in _KINDS if test(mode)), "special file")


def is_own_folder(path: Path) -> bool:
    """Whether ``path`` is a folder of its own, not a link to one (a link's target is
    elsewhere: deleting or renaming through it would reach what is not ours)."""
    return path.is_dir() and not path.is_symlink()


def check_regular_file(path: str | Path, name: str, *, fifo: bool = False) -> None:
    """Refuse a ``path`` that exists but is not a file to read: a directory, a device
    (``/dev/zero`` never ends), or a FIFO unless ``fifo`` (a pipe the caller streams).

    A missing path passes: each caller says "no such file" its own way.

    Raises:
        IsADirectoryError, ValueError: naming ``name``, the path and what it is.
    """
    kind = file_kind(path)
    if kind in (None, "regular file") or (fifo and kind == "FIFO"):
        return
    if kind == "directory":
        raise IsADirectoryError(f"{name}: {path} is a directory, expected a file")
    wanted = "a regular file or a FIFO" if fifo else "a regular file"
    raise ValueError(f"{name}: {path} is not a regular file (it is a {kind}); expected "
                     f"{wanted}")


def _same_file(a: str | Path, b: str | Path) -> bool:
    """``a`` and ``b`` name one file or folder: the same inode where both exist (a hard
    link too), else the same path once links and ``..`` are resolved."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _inside(inner: str | Path, outer: str | Path) -> bool:
    """``inner`` lies below the folder ``outer`` (links resolved)."""
    inner, outer = os.path.realpath(inner), os.path.realpath(outer)
    return inner != outer and os.path.commonpath([inner, outer]) == outer


def _hard_link_into(out: str | Path, folder: str | Path) -> bool:
    """``out`` is an existing file with another name (a hard link) below ``folder``."""
    try:
        st = os.stat(out)
    except OSError:
        return False
    if not (stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and os.path.isdir(folder)):
        return False
    for top, _, files in os.walk(folder):
        for name in files:
            other = os.stat(os.path.join(top, name), follow_symlinks=False)
            if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
                return True
    return False


def check_not_an_input(out: str | Path, out_name: str,
                       inputs: list[tuple[str, str | Path | None]], *,
                       holds: bool = False) -> None:
    """Refuse an output that would overwrite what the command reads, before anything is
    written: ``out`` (given as ``out_name``) may not be the same file or folder as an
    input (through a symbolic or hard link, or another spelling of the path), nor lie
    inside an input folder (nor be a hard link of a file there); with ``holds`` (an
    output folder that is filled or replaced), nor hold an input. ``inputs``:
    ``(flag, path)`` pairs, ``None`` paths skipped.

    Raises:
        ValueError: naming both flags and paths.
    """
    for name, path in inputs:
        if path is None:
            continue
        if _same_file(out, path):
            raise ValueError(f"{out_name} is the same file as {name}: {out} is {path}; "
                             "write the output elsewhere")
        if _inside(out, path) or _hard_link_into(out, path):
            how = "is inside" if _inside(out, path) else "is a hard link of a file in"
            raise ValueError(f"{out_name} {out} {how} {name} {path}, which this command "
                             "reads; write the output elsewhere")
        if holds and _inside(path, out):
            raise ValueError(f"{out_name} {out} holds {name} {path}, which this command "
                             "reads and the output would overwrite; write it elsewhere")
