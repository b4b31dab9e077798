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
