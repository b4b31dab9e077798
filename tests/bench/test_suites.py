"""Every benchmark suite has the same contract: one torch-free declaration in the one list
(:mod:`attnkit.bench._suite`), and a run() whose result follows :mod:`attnkit.bench.report`."""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from attnkit.bench import SUITES, declared


@pytest.mark.parametrize("suite", list(SUITES))
def test_suite_has_run_returning_a_result_with_summary_markdown_and_markers(suite):
    module = importlib.import_module(declared()[suite].module)
    params = inspect.signature(module.run).parameters.values()
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)
    result_type = inspect.signature(module.run).return_annotation
    result_cls = getattr(module, result_type) if isinstance(result_type, str) else result_type
    start, end = result_cls.markers
    assert start == module.START and end == module.END
    assert callable(result_cls.summary) and callable(result_cls.markdown)
    assert "output" not in inspect.signature(module.run).parameters  # run() writes nothing



def test_the_registry_is_one_list_of_packages_that_declare_themselves():
    import attnkit.bench
    from attnkit.bench import Suite

    suites = declared()
    assert list(suites) == list(SUITES)
    for name, suite in suites.items():
        assert isinstance(suite, Suite) and suite.name == name
        assert suite.module == f"attnkit.bench.{name}.measure"
    root = Path(attnkit.bench.__file__).parent  # no suite outside the list
    assert sorted(p.parent.name for p in root.glob("*/measure.py")) == sorted(SUITES)


def _bench_subparsers() -> dict[str, argparse.ArgumentParser]:
    from attnkit.cli import build_parser

    bench = build_parser("bench")._subparsers._group_actions[0].choices["bench"]
    return bench._subparsers._group_actions[0].choices


def test_each_suites_subcommand_has_its_declared_help_and_flags_and_record():
    parsers = _bench_subparsers()
    assert list(parsers) == list(SUITES)
    for name, suite in declared().items():
        p = parsers[name]
        assert p.description == suite.help
        options = {o for a in p._actions for o in a.option_strings}
        assert options == {f.name for f in suite.flags} | {"-h", "--help", "--record"}, name
        given = [x for f in suite.flags if f.required for x in (f.name, "x")]
        parsed = p.parse_args(given)
        for f in suite.flags:
            value = getattr(parsed, f.name[2:].replace("-", "_"))
            assert value == ("x" if f.required else (False if f.switch else f.default))


def test_commands_bench_names_no_suite():
    import attnkit.commands.bench as command

    source = Path(command.__file__).read_text()
    assert [name for name in SUITES if re.search(rf"\b{name}\b", source)] == []


class _Reads:
    """A parsed-flags stand-in that records which flags a suite's ``arguments`` reads."""

    def __init__(self, values: dict):
        self.values, self.read = values, set()

    def __getattr__(self, name):
        self.read.add(name)
        return self.values[name]


@pytest.mark.parametrize("suite", list(SUITES))
def test_every_declared_flag_reaches_the_suites_run(suite):
    declaration = declared()[suite]
    given = [x for f in declaration.flags if f.required for x in (f.name, "x")]
    parsed = _bench_subparsers()[suite].parse_args(given)
    reads = _Reads(vars(parsed))
    kwargs = declaration.arguments(reads)
    assert reads.read == {f.name[2:].replace("-", "_") for f in declaration.flags}
    run = importlib.import_module(declaration.module).run
    inspect.signature(run).bind(**kwargs)  # every keyword is one run() takes


# run in a fresh interpreter, so that no other test's imports count
_DECLARING_LOADS = """
import sys
from attnkit.bench import declared
declared()
print(sorted(m for m in sys.modules
             if m.split(".")[0] in ("torch", "numpy") or m.endswith(".measure")))
"""


def test_the_suite_packages_import_no_torch_and_no_measurement():
    r = subprocess.run([sys.executable, "-c", _DECLARING_LOADS], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_a_thread_list_flag_says_what_it_expected(capsys):
    from attnkit.cli import main

    for text, said in (("2,x", "expected a comma list of positive ints; got '2,x'"),
                       ("2,0", "expected a comma list of positive ints; got '2,0'")):
        with pytest.raises(SystemExit) as exit_:
            main(["bench", "transformer", "--threads", text])
        assert exit_.value.code == 2
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"attnkit bench transformer: error: argument --threads: {said}")

def test_every_recorded_section_says_where_it_ran(tmp_path):
    from attnkit.bench.report import record
    from attnkit.runtime import machine

    class Result:
        markers = ("<!-- bench:x:start -->", "<!-- bench:x:end -->")

        def summary(self):
            return []

        def markdown(self, command):
            return f"## X\n\nCommand: `{command}`\n\n| a |\n|---|\n| 1 |\n"

    path = record(Result(), tmp_path / "B.md", "attnkit bench x", machine=machine())
    text = path.read_text()
    where = next(line for line in text.splitlines() if line.startswith("- Where: "))
    m = machine()
    for fact in (m["cpu"], f"ISA {m['isa']}", "native bf16:", "torch threads",
                 "load average"):
        assert fact in where, fact
    assert text.index("## X") < text.index("- Where:") < text.index("Command:")


def test_decoding_suite_reports_ratios_and_refuses_non_multi30k_runs():
    from pathlib import Path

    from attnkit.bench.decoding.measure import DecodingResult, run

    golden = Path(__file__).resolve().parents[1] / "golden" / "run-format-2"
    with pytest.raises(ValueError, match="needs a run trained on \\[data\\] kind = 'multi30k'"):
        run(checkpoint=str(golden))
    rows = [dict(engine=e, threads=1, beam=b, seconds=1.0, sent_s=s, tok_s=10 * s, bleu=30.0)
            for e, b, s in (("attnkit", 1, 50.0), ("ct2 float32", 1, 80.0), ("ct2 int8", 1,
                                                                                  120.0),
                            ("attnkit", 5, 10.0), ("ct2 float32", 5, 40.0))]
    r = DecodingResult(rows, 1000, "Multi30k test", "runs/x", "2026-11-30",
                       {"float32": 29_200_000, "int8": 8_300_000})
    assert r.ratio(1, 1) == 50 / 80 and r.ratio(1, 5) == 0.25
    text = r.markdown("attnkit bench decoding --checkpoint runs/x")
    assert "| ct2 int8 | 1 | 1 | 1.0 | 120.0 | 1,200 | 30.00 | 2.40× |" in text
    assert "`model.bin` (float32): 29.2 MB. Exported `model.bin` (int8): 8.3 MB." in text
    assert any("0.62x (target >= 0.5): met" in line for line in r.summary())
    assert any("0.25x (target >= 0.4): NOT met" in line for line in r.summary())


def test_threads_suite_renders_its_target():
    from attnkit.bench.threads.measure import ThreadsResult

    rows = [dict(setting=s, threads_idle=ti, threads_loaded=tl, idle=i, loaded=lo,
                 ratio=lo / i) for s, ti, tl, i, lo in (("1", 1, 1, 100.0, 95.0),
                                                        ("2", 2, 2, 160.0, 40.0),
                                                        ("auto", 2, 1, 160.0, 95.0))]
    r = ThreadsResult(rows, 3, "2026-11-30")
    assert r.auto_ratio() == 95 / 160
    assert "auto keeps 0.59x of idle (target >= 0.4): met" in r.summary()[-1]
    assert "| auto | 2 / 1 | 160 | 95 | 0.59× |" in r.markdown("attnkit bench threads")
