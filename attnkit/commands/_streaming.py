"""Reading sentences as they arrive: standard input, a pipe or a file, in bounded memory.

``yes 3 1 | attnkit translate ...`` never ends, and a writer may send one line
a minute: :func:`line_chunks` hands the lines over in chunks as soon as they
are there (when the pipe is drained, or a chunk is full), so the first
translations come out while input is still arriving, and memory holds one
chunk, not the whole input.

Lines follow the rules of :func:`attnkit.data.corpus.read_sentences`: split on
``\\n`` only, a trailing ``\\r`` dropped, a UTF-8 byte order mark at the start
dropped, every line kept (blank too).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["CHUNK_LINES", "MAX_LINE_BYTES", "count_lines", "line_chunks", "open_input"]

CHUNK_LINES = 256  # lines translated together at most (sorted by length within)
MAX_LINE_BYTES = 1 << 20  # a longer "line" is not a sentence (e.g. /dev/zero)
READ_BYTES = 1 << 16  # one read; a shorter answer means the pipe is drained for now


def open_input(path: str, name: str):
    """``path`` opened for reading in binary: a regular file, or a FIFO (streamed).

    Raises:
        FileNotFoundError / IsADirectoryError: naming ``name`` and the path.
        ValueError: the path exists but is another kind of file (a device, a socket).
    """
    from .._io import check_regular_file

    check_regular_file(path, name, fifo=True)
    if not Path(path).exists():
        raise FileNotFoundError(f"{name}: no such file: {path}")
    return open(path, "rb")  # the caller closes it


def count_lines(path: str) -> int | None:
    """Lines :func:`line_chunks` will find in ``path`` (for a progress bar's total), read
    block by block; ``None`` for a FIFO, which can be read only once."""
    from .._io import file_kind

    if file_kind(path) != "regular file":
        return None
    count, last = 0, b"\n"
    with open(path, "rb") as f:
        while block := f.read(READ_BYTES):
            count, last = count + block.count(b"\n"), block[-1:]
    return count + (last != b"\n")


def _decode(raw: bytes, line_no: int, name: str) -> str:
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{name}: line {line_no} is not valid UTF-8 (byte "
                         f"{raw[e.start:e.start + 1]!r} at column {e.start + 1})") from None
    return text[1:] if line_no == 1 and text.startswith("\ufeff") else text


def _too_long(line_no: int, name: str) -> ValueError:
    return ValueError(f"{name}: line {line_no} is longer than {MAX_LINE_BYTES} bytes without "
                      "a line break; expected one sentence per line")


def _read(stream) -> bytes:
    read = getattr(stream, "read1", None)
    if read is not None:
        return read(READ_BYTES)
    return os.read(stream.fileno(), READ_BYTES)


def line_chunks(stream, name: str, *, chunk_lines: int = CHUNK_LINES
                ) -> Iterator[list[str]]:
    """The lines of binary ``stream`` in chunks of at most ``chunk_lines``, each chunk as
    soon as a read comes back short (nothing more there yet) or the chunk is full.

    Raises:
        ValueError: a line is not valid UTF-8, or longer than ``MAX_LINE_BYTES``
            (the message gives its number); the chunks before it were yielded.
    """
    pending: list[bytes] = []
    partial, done = b"", 0  # the unfinished last line; lines yielded so far
    while True:
        data = _read(stream)
        if not data:
            break
        *lines, partial = (partial + data).split(b"\n")
        for i, raw in enumerate([*lines, partial]):
            if len(raw) > MAX_LINE_BYTES:
                raise _too_long(done + len(pending) + i + 1, name)
        pending += lines
        while len(pending) >= chunk_lines or (pending and len(data) < READ_BYTES):
            take, pending = pending[:chunk_lines], pending[chunk_lines:]
            yield [_decode(raw, done + i + 1, name) for i, raw in enumerate(take)]
            done += len(take)
    if partial:
        pending.append(partial)  # the last line, without a final newline
    for start in range(0, len(pending), chunk_lines):
        take = pending[start:start + chunk_lines]
        yield [_decode(raw, done + i + 1, name) for i, raw in enumerate(take)]
        done += len(take)
