"""``attnkit translate`` gives a line the same output alone as an argument, in a file
among much longer lines, and streamed slowly on stdin beside them, with both engines:
the default output limit (``2·S + 10``) is each sentence's own, never its batch's.

The model never emits ``<eos>`` (tests/_no_eos.py): every output runs to its limit, so
a limit taken from a longer neighbour shows as a longer output."""

import contextlib
import io
import subprocess
import time

import pytest

from attnkit.cli import main

from .._no_eos import write_no_eos_run
from ._limits import ROOT, attnkit_command, child_env
from .test_streaming import LineReader, finish

SHORT = "5"  # limit 14
LONG = [" ".join("9876543210" * 3), "1 2 3 4 5 6 7 8 9 0 1 2"]  # limits 63 and 36
LIMITS = {SHORT: 14, LONG[0]: 63, LONG[1]: 36}
SEARCHES = {
    "greedy": ["--beam-size", "1"],
    "beam3_alpha0.6": ["--beam-size", "3", "--length-penalty", "0.6"],
    "beam3_alpha0": ["--beam-size", "3", "--length-penalty", "0"],
}
ENGINES = ["attnkit", "ctranslate2"]


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    """``engines(name)``: the flags that pick the no-<eos> run on that engine (CTranslate2:
    the run exported by ``attnkit export ctranslate2``)."""
    root = tmp_path_factory.mktemp("no_eos")
    ckpt = write_no_eos_run(root / "checkpoints")
    made: dict[str, list[str]] = {"attnkit": ["--checkpoint", str(ckpt)]}

    def get(name: str) -> list[str]:
        if name not in made:
            pytest.importorskip("ctranslate2")
            out, said = root / "ct2", io.StringIO()
            with contextlib.redirect_stdout(said):  # not into the first test's output
                assert main(["export", "ctranslate2", "--checkpoint", str(ckpt), "--out",
                             str(out)]) == 0
            assert said.getvalue().startswith(f"exported {ckpt} -> {out} (ctranslate2, ")
            made[name] = ["--engine", "ctranslate2", "--model", str(out)]
        return made[name]

    return get


def translate(argv: list[str], capsys) -> list[str]:
    code = main(["translate", *argv, "--threads", "1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out.split("\n")[:-1]


def alone(flags: list[str], capsys) -> dict[str, str]:
    """Each line's output, translated alone as a command-line argument; each runs to its
    own limit (the model never ends a sentence)."""
    each = {line: translate([*flags, line], capsys)[0] for line in LIMITS}
    assert {line: len(out.split()) for line, out in each.items()} == LIMITS
    return each


@pytest.mark.parametrize("search", SEARCHES)
@pytest.mark.parametrize("engine", ENGINES)
def test_a_short_line_translates_alone_as_in_a_file_of_long_lines(engines, engine, search,
                                                                  tmp_path, capsys):
    flags = [*engines(engine), *SEARCHES[search]]
    want = alone(flags, capsys)
    lines = [LONG[0], SHORT, LONG[1], "", SHORT]
    f = tmp_path / "in.txt"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert translate([*flags, "--input", str(f)], capsys) == [want.get(x, "") for x in lines]


def test_n_best_lists_are_the_same_alone_and_in_a_file(engines, tmp_path, capsys):
    flags = [*engines("attnkit"), "--beam-size", "3", "--n-best", "3"]

    def parsed(out: list[str]) -> list[tuple[int, str, float]]:
        return [(int(i), text, float(score)) for i, text, score in
                (x.split(" ||| ") for x in out)]

    each = {line: parsed(translate([*flags, line], capsys)) for line in LIMITS}
    lines = [LONG[0], SHORT, LONG[1], SHORT]
    f = tmp_path / "in.txt"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    got = parsed(translate([*flags, "--input", str(f)], capsys))
    want = [(n, text, score) for n, line in enumerate(lines) for _, text, score in each[line]]
    assert [(n, text) for n, text, _ in got] == [(n, text) for n, text, _ in want]
    # printed with 4 decimals, from float32 sums batched or not: a last digit may differ
    assert [s for *_, s in got] == pytest.approx([s for *_, s in want], abs=2e-4)
    assert len(each[SHORT][0][1].split()) == LIMITS[SHORT]


@pytest.mark.parametrize("search", SEARCHES)
@pytest.mark.parametrize("engine", ENGINES)
def test_a_short_line_streamed_beside_long_ones_translates_as_alone(engines, engine, search,
                                                                   capsys):
    """A real pipe, written slowly: a short line arriving in one write with a long one
    (one chunk, decoded together), then alone, then after another long one."""
    flags = [*engines(engine), *SEARCHES[search]]
    want = alone(flags, capsys)
    proc = subprocess.Popen(attnkit_command("translate", *flags, "--threads", "1"), cwd=ROOT,
                            env=child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        out = LineReader(proc)
        for write in ([LONG[0], SHORT], [SHORT], [LONG[1], SHORT]):
            proc.stdin.write("".join(x + "\n" for x in write).encode())
            proc.stdin.flush()
            assert [out.line() for _ in write] == [want[x] for x in write], write
            time.sleep(0.3)
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0, proc.stderr.read().decode()
    finally:
        finish(proc)
