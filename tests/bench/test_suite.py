"""Every benchmark suite has the same contract: one torch-free declaration in the one list
(:mod:`attnkit.bench._suite`), and a run() whose result follows :mod:`attnkit.bench.report`."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

from attnkit.bench import SUITES, declared
from tests._fresh import run_fresh
from tests.commands.test_bench import _bench_subparsers


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
    assert run_fresh(_DECLARING_LOADS).strip() == "[]"


def test_a_thread_list_flag_says_what_it_expected(capsys):
    from attnkit.cli import main

    for text, said in (("2,x", "expected a comma list of positive ints; got '2,x'"),
                       ("2,0", "expected a comma list of positive ints; got '2,0'")):
        with pytest.raises(SystemExit) as exit_:
            main(["bench", "transformer", "--threads", text])
        assert exit_.value.code == 2
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"attnkit bench transformer: error: argument --threads: {said}")
