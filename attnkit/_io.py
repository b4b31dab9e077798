"""Small file helpers shared by the layers that write to disk."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

__all__ = ["read_json", "write_atomic"]


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
