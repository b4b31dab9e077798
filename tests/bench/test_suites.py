"""Every benchmark suite has the same contract (see :mod:`attnkit.bench.report`)."""

from __future__ import annotations

import importlib
import inspect

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
