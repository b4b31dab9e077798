"""The attention benchmark runs end to end on tiny shapes and rewrites only its section."""

from __future__ import annotations

import pytest

from attnkit.bench.attention.measure import END, START, run
from attnkit.bench.report import record, write_marked
from attnkit.cli import main


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "BENCHMARKS.md"
    result = run(quick=True, repeats=1, flex=False, big=True)
    record(result, path, "attnkit bench attention --quick")
    return result, path


def test_table_structure(quick_result):
    result, path = quick_result
    text = path.read_text()
    assert text.count(START) == 1 and text.count(END) == 1
    assert "| workload | pass | implementation | median ms | GFLOP/s | % of matmul peak " \
           "| peak MiB | speedup of attnkit |" in text
    assert "`attnkit bench attention --quick`" in text and "torch " in text
    assert "Measured matmul peak: fp32" in text and "### Targets" in text
    impls = {(r.workload, r.mode, r.impl.split(":")[0]) for r in result.rows}
    assert ("scaled_dot valid_lens fp32", "fwd", "attnkit") in impls
    assert ("scaled_dot valid_lens fp32", "fwd+bwd", "sdpa+mask") in impls
    assert any(r.impl == "attnkit:chunked" for r in result.rows)
    timed = [r for r in result.rows if r.ms is not None]
    assert all(r.ms > 0 and r.gflops > 0 and r.mem_mib >= 0 for r in timed)
    assert any(r.ms is None and "not run" in r.note for r in result.rows)  # modeled reference
    names = [t[0] for t in result.targets]
    assert "scaled dot fwd vs SDPA+mask" in names and "bf16 vs fp32 scaled dot fwd" in names
    # how chunked evaluated the additive blocks is part of the record
    assert "- How chunked ran: additive blocks by " in text


def test_write_is_idempotent_and_keeps_other_sections(quick_result, tmp_path):
    result, _ = quick_result
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n<!-- bench:other:start -->\nother table\n"
                    "<!-- bench:other:end -->\n")
    section = result.markdown("attnkit bench attention --quick")
    write_marked(path, START, END, section)
    once = path.read_text()
    write_marked(path, START, END, section)
    assert path.read_text() == once
    assert "other table" in once and once.count(START) == 1
    write_marked(path, START, END, "replaced\n")
    text = path.read_text()
    assert "replaced" in text and "| workload |" not in text and "other table" in text


def test_main_quick(tmp_path, capsys):
    out = tmp_path / "B.md"
    assert main(["bench", "attention", "--quick", "--repeats", "1", "--no-flex", "--no-big",
                 "--record", str(out)]) == 0
    assert "--quick" in out.read_text()
    assert "scaled dot fwd vs SDPA+mask" in capsys.readouterr().out
    assert f"`attnkit bench attention --quick --repeats 1 --no-flex --no-big --record {out}`" \
        in out.read_text()


def test_nothing_is_written_without_record(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "attention", "--quick", "--repeats", "1", "--no-flex",
                 "--no-big"]) == 0
    assert list(tmp_path.iterdir()) == []
    out = capsys.readouterr().out
    assert "scaled dot fwd vs SDPA+mask" in out and "not recorded" in out


def test_record_without_file_writes_benchmarks_md(tmp_path, monkeypatch, quick_result):
    from attnkit.bench.attention import measure as attention

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(attention, "run", lambda **kw: quick_result[0])  # no second run
    assert main(["bench", "attention", "--quick", "--record"]) == 0
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert text.count(START) == 1 and "`attnkit bench attention --quick --record`" in text
