from pathlib import Path

from attnkit.bench.report import record, write_marked
from attnkit.bench.throughput.measure import END, START, run


def test_quick_throughput_run_writes_its_section_idempotently(tmp_path):
    out = tmp_path / "B.md"
    out.write_text("# Benchmarks\n\nother section\n")
    r = run(max_tokens=300, num_batches=2, rounds=1, data_root=Path("/nonexistent"), d=32,
            heads=2, ffn=48, layers=1)
    assert out.read_text() == "# Benchmarks\n\nother section\n"  # run() writes nothing
    assert set(r.tokens_per_s) == {"attnkit", "torch.nn.Transformer"}
    assert r.ratio > 0 and "date task" in r.source
    assert r.summary()[-1] == f"ratio attnkit / torch: {r.ratio:.2f}"
    record(r, out, "attnkit bench throughput --rounds 1")
    text = out.read_text()
    assert "Command: `attnkit bench throughput --rounds 1`." in text
    assert text.count(START) == 1 and "other section" in text and "Ratio attnkit / torch" in text
    write_marked(out, START, END, "replaced")
    text2 = out.read_text()
    assert text2.count(START) == 1 and "replaced" in text2 and "Ratio" not in text2
