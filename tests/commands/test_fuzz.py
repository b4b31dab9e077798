"""Fuzzing the command line in-process: random config values, corpora and stdin.

Whatever comes in, a command ends with success or one line ``attnkit CMD: error: ...``
(never a traceback), within a time bound, and translate's output lines up with its
input.
"""

import io
import math
import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnkit.cli import main
from attnkit.train.config import flat_options

from .test_reliability import GOLDEN, TINY, one_error_line, pairs_file

FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
SECONDS = 60  # far above what any example needs on 2 cores


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) \
            else repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return str(v)


values = st.one_of(st.integers(-5, 40), st.floats(allow_nan=True, allow_infinity=True),
                   st.booleans(), st.text(max_size=8), st.lists(st.integers(0, 3), max_size=2))
tables = st.sampled_from(["data", "tokenizer", "model", "optim", "run", "bogus"])
keys = st.one_of(st.sampled_from(sorted({k for _, k, _, _ in flat_options().values()})),
                 st.text(alphabet="abcxyz_", min_size=1, max_size=6))


def ends_well(code: int, err: str, command: str, started: float) -> None:
    assert time.time() - started < SECONDS
    assert code in (0, 2), (code, err)
    if code == 2:
        one_error_line(err, command)
    assert "Traceback" not in err


@FUZZ
@given(entries=st.lists(st.tuples(tables, keys, values), min_size=1, max_size=4))
def test_random_config_values(tmp_path_factory, capsys, entries):
    tmp = tmp_path_factory.mktemp("fuzzcfg")
    by_table: dict = {}
    for table, key, value in entries:
        by_table.setdefault(table, {})[key] = value
    text = "".join(f"[{t}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in kv.items())
                   for t, kv in by_table.items())
    (tmp / "fuzz.toml").write_text(text)
    started = time.time()
    code = main(["train", "--config", str(tmp / "fuzz.toml"), *TINY, "--train-path",
                 str(pairs_file(tmp / "pairs.tsv", 60)), "--max-steps", "1", "--epochs", "1",
                 "--out-dir", str(tmp / "run"), "--vocab-size", "40", "--time-limit", "30"])
    ends_well(code, capsys.readouterr().err, "train", started)


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_as_a_corpus(tmp_path_factory, capsys, data):
    tmp = tmp_path_factory.mktemp("fuzzdata")
    (tmp / "corpus.tsv").write_bytes(data)
    started = time.time()
    code = main(["train", *TINY, "--train-path", str(tmp / "corpus.tsv"), "--max-steps", "1",
                 "--out-dir", str(tmp / "run")])
    ends_well(code, capsys.readouterr().err, "train", started)


@FUZZ
@given(data=st.one_of(st.binary(max_size=200),
                      st.text(alphabet="0123456789 \n\r\t\x0b\x0c\u2028\u0085é",
                              max_size=60).map(lambda s: s.encode())))
def test_random_stdin_to_translate_stays_aligned(capsys, monkeypatch, data):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    started = time.time()
    code = main(["translate", "--checkpoint", str(GOLDEN), "--beam-size", "2"])
    out, err = capsys.readouterr()
    ends_well(code, err, "translate", started)
    if code == 0:
        lines = data.split(b"\n")
        expected = len(lines) - (1 if lines[-1] == b"" else 0)
        assert out.count("\n") == expected, (data, out)
    else:
        assert "not valid UTF-8" in err


def test_the_fuzzers_reach_the_real_files():
    assert (Path(GOLDEN) / "manifest.json").is_file()
