from pathlib import Path

import torch

from attnkit.bench.report import record, write_marked
from attnkit.bench.throughput.measure import END, START, run

from ..conftest import START_THREADS


def test_quick_throughput_run_writes_its_section_idempotently(tmp_path):
    out = tmp_path / "B.md"
    out.write_text("# Benchmarks\n\nother section\n")
    r = run(max_tokens=300, num_batches=2, rounds=1, data_root=Path("/nonexistent"), d=32,
            heads=2, ffn=48, layers=1)
    assert out.read_text() == "# Benchmarks\n\nother section\n"  # run() writes nothing
    assert set(r.tokens_per_s) == {"attnkit", "torch.nn.Transformer"}
    assert r.ratio > 0 and "date task" in r.source
    assert r.summary()[-2] == f"ratio attnkit / torch: {r.ratio:.2f}"
    record(r, out, "attnkit bench throughput --rounds 1")
    text = out.read_text()
    assert "Command: `attnkit bench throughput --rounds 1`." in text
    assert text.count(START) == 1 and "other section" in text and "Ratio attnkit / torch" in text
    write_marked(out, START, END, "replaced")
    text2 = out.read_text()
    assert text2.count(START) == 1 and "replaced" in text2 and "Ratio" not in text2


def test_throughput_suite_restores_threads(three_threads, tmp_path):
    from attnkit.bench.throughput.measure import run

    r = run(max_tokens=200, num_batches=1, rounds=1, data_root=tmp_path, d=16, heads=2,
            ffn=32, layers=1)  # no Multi30k under tmp_path: the built-in date task
    assert r.tokens_per_s["attnkit"] > 0
    assert torch.get_num_threads() == START_THREADS


def test_model_flops_per_token_counts_forward_and_backward_products():
    """A step through one ``Linear(a, b)`` costs ``2ab`` FLOPs per token forward and
    ``4ab`` backward (gradients of the input and of the weight)."""
    from attnkit.bench.throughput.measure import model_flops_per_token

    layer = torch.nn.Linear(24, 40, bias=False)
    x = torch.randn(7, 24, requires_grad=True)

    def step(_batch) -> int:
        layer(x).sum().backward()
        return x.shape[0]

    assert model_flops_per_token(step, None) == 6 * 24 * 40


def test_throughput_reports_model_flop_utilization_against_its_own_peak(tmp_path):
    r = run(max_tokens=200, num_batches=1, rounds=1, data_root=tmp_path, d=16, heads=2,
            ffn=32, layers=1)
    assert r.flops_per_token > 0 and r.peak_gflops > 0 and r.peak_size in (512, 1024, 2048)
    for name, tps in r.tokens_per_s.items():
        assert r.mfu[name] == tps * r.flops_per_token / (r.peak_gflops * 1e9)
    text = r.markdown("attnkit bench throughput")
    assert f"| attnkit | {r.tokens_per_s['attnkit']:,.0f} | {r.mfu['attnkit']:.0%} |" in text
    assert "target ≥ 80 %" in text
