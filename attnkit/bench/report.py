"""Writing benchmark results into BENCHMARKS.md, one marked section per benchmark."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_marked"]


def write_marked(path: str | os.PathLike, start: str, end: str, section: str) -> None:
    """Replace the text between ``start`` and ``end`` in ``path``; append the
    section (creating the file) when the markers are absent. Re-runs replace
    only their own section."""
    path = Path(path)
    block = f"{start}\n{section.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text and text.index(start) < text.index(end):
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
