"""What a suite records: its section of BENCHMARKS.md, under the line that says where it ran."""

from __future__ import annotations


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
