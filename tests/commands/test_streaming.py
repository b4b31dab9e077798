"""``attnkit translate`` streams: outputs come while input is still arriving, in input
order, one line per line, in bounded memory, from real pipes and FIFOs."""

import io
import os
import select
import subprocess
import sys
import time

import pytest

from attnkit.cli import main

from ._limits import CHILD_LIMIT, ROOT, attnkit_command, child_env, limit_address_space
from .test_reliability import GOLDEN, one_error_line

WAIT = 180  # seconds for a child to start (torch import on 2 busy cores) and answer


def translate_child(*extra: str, stdin=subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen(
        attnkit_command("translate", "--checkpoint", str(GOLDEN), "--beam-size", "1",
                        "--threads", "1", *extra),
        cwd=ROOT, env=child_env(), stdin=stdin, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, preexec_fn=limit_address_space(CHILD_LIMIT))


class LineReader:
    """Lines of a child's stdout, each waited for at most ``WAIT`` seconds."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.fd, self.buf = proc, proc.stdout.fileno(), b""

    def line(self, wait: float = WAIT) -> str:
        deadline = time.monotonic() + wait
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                state = "running" if self.proc.poll() is None else "ended"
                raise AssertionError(f"no output line within {wait} s (child {state})")
            data = os.read(self.fd, 1 << 16)
            if not data:
                raise AssertionError("stdout closed: " + self.proc.stderr.read().decode())
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()


def finish(proc: subprocess.Popen) -> None:
    """End a child this test started (it may already have ended) and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=WAIT)


def test_outputs_come_while_stdin_is_still_open():
    proc = translate_child()
    try:
        out = LineReader(proc)
        proc.stdin.write(b"3 1\n")
        proc.stdin.flush()
        assert out.line() == "three one"  # stdin is still open: nothing waits for its end
        proc.stdin.write(b"\n4 5\n")
        proc.stdin.flush()
        assert [out.line(), out.line()] == ["", "four five"]
        proc.stdin.close()
        assert proc.wait(timeout=WAIT) == 0, proc.stderr.read().decode()
        assert out.buf == b"" and proc.stdout.read() == b""
    finally:
        finish(proc)


def test_endless_input_is_translated_in_bounded_memory():
    """``yes 3 1 | attnkit translate`` under a 3 GiB address-space cap: reading all of
    stdin first would pass the cap within seconds; streaming keeps going."""
    yes = subprocess.Popen(["yes", "3 1"], stdout=subprocess.PIPE)
    proc = translate_child(stdin=yes.stdout)
    yes.stdout.close()  # the child holds the pipe now
    try:
        out = LineReader(proc)
        assert out.line() == "three one"
        lines = [out.line(wait=60) for _ in range(3000)]  # many chunks of the endless input
        assert set(lines) == {"three one"}
        assert proc.poll() is None  # still running, under the cap
    finally:
        finish(proc)
        finish(yes)


def test_a_fifo_given_as_input_is_streamed(tmp_path):
    fifo = tmp_path / "sentences"
    os.mkfifo(fifo)
    proc = translate_child("--input", str(fifo))
    writer = None
    try:
        deadline = time.monotonic() + WAIT
        while writer is None:  # a FIFO opens for writing once the child opens it to read
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "the child never opened the FIFO"
                time.sleep(0.2)
        out = LineReader(proc)
        os.write(writer, b"3 1\n")
        assert out.line() == "three one"  # the FIFO is still open for writing
        os.close(writer)
        writer = None
        assert proc.wait(timeout=WAIT) == 0, proc.stderr.read().decode()
    finally:
        if writer is not None:
            os.close(writer)
        finish(proc)


def run(argv, capsys, monkeypatch, stdin: bytes):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_n_best_lines_and_the_cut_note_count_across_chunks(capsys, monkeypatch):
    """300 lines are two chunks (256 + 44): numbering goes on across them."""
    lines = ["3 1"] * 300
    lines[280] = " ".join(["4"] * 40)  # longer than the model's positional table
    code, out, err = run(["translate", "--checkpoint", str(GOLDEN), "--beam-size", "2",
                          "--n-best", "1", "--threads", "1"], capsys, monkeypatch,
                         "\n".join(lines).encode())
    assert code == 0, err
    numbers = [int(x.split(" ||| ")[0]) for x in out.splitlines()]
    assert numbers == list(range(300))
    assert "note: 1 of 300 sentences are longer than the model's positional table" in err
    assert "(lines 281)" in err


def test_a_line_that_never_ends_is_refused(capsys, monkeypatch):
    code, out, err = run(["translate", "--checkpoint", str(GOLDEN)], capsys, monkeypatch,
                         b"3 1\n" + b"\0" * (3 << 20))
    line = one_error_line(err, "translate")
    assert code == 2 and "stdin: line 2 is longer than 1048576 bytes" in line
    assert out == ""  # line 1 came in the same read: nothing was translated yet


@pytest.mark.parametrize("data, expected", [
    (b"\xef\xbb\xbf3 1\r\n\r\n4", ["three one", "", "four"]),
    (b"3 1", ["three one"]),
    (b"", []),
])
def test_streamed_lines_follow_the_corpus_rules(capsys, monkeypatch, data, expected):
    code, out, err = run(["translate", "--checkpoint", str(GOLDEN), "--beam-size", "1"],
                         capsys, monkeypatch, data)
    assert code == 0, err
    assert out.split("\n")[:-1] == expected
