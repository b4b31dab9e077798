"""Every benchmark suite has the same contract (see :mod:`attnkit.bench.report`)."""

from __future__ import annotations

import importlib
import inspect

import pytest

from attnkit.bench import SUITES


@pytest.mark.parametrize("suite", list(SUITES))
def test_suite_has_run_returning_a_result_with_summary_markdown_and_markers(suite):
    module = importlib.import_module(SUITES[suite])
    params = inspect.signature(module.run).parameters.values()
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)
    result_type = inspect.signature(module.run).return_annotation
    result_cls = getattr(module, result_type) if isinstance(result_type, str) else result_type
    start, end = result_cls.markers
    assert start == module.START and end == module.END
    assert callable(result_cls.summary) and callable(result_cls.markdown)
    assert "output" not in inspect.signature(module.run).parameters  # run() writes nothing


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
