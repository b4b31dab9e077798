import pytest
import torch

from attnkit.bench.gpu.measure import needed_flops
from attnkit.cli import main


def test_needed_flops_counts_valid_and_causal_keys_only():
    lens = torch.tensor([4, 2])
    # non-causal: every query row sees L keys; 4·d·H per (query, key) pair
    assert needed_flops(lens, 4, 8, 2, False) == 4 * 8 * 2 * (4 * 4 + 4 * 2)
    # causal: row i sees min(i + 1, L) keys
    assert needed_flops(lens, 4, 8, 2, True) == 4 * 8 * 2 * ((1 + 2 + 3 + 4) + (1 + 2 + 2 + 2))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the refusal "
                    "without it cannot be seen here")
def test_gpu_bench_refuses_without_cuda(capsys):
    assert main(["bench", "gpu", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "needs a CUDA device" in err
    assert err.startswith("attnkit bench gpu: error: ") and err.count("\n") == 1


def test_result_formats_rows_for_the_terminal_and_the_record():
    from attnkit.bench.gpu.measure import GpuBenchResult

    rows = [{"d": 64, "N": 1024, "causal": True, "valid_lens": False, "impl": "attnkit triton",
             "ms": 0.1234, "tflops": 250.0},
            {"d": 64, "N": 1024, "causal": False, "valid_lens": True,
             "impl": "additive chunked", "ms": 2.5, "tflops": float("nan"), "peak_mib": 12.0}]
    r = GpuBenchResult(rows, "NVIDIA H200", "550.1", "2.13", "3.5", "2026-01-01")
    text = r.markdown("attnkit bench gpu --quick")
    assert "Command: `attnkit bench gpu --quick`." in text and "NVIDIA H200" in text
    assert "| 64 | 1024 | True | False | attnkit triton | 0.123 | 250.0 |  |" in text
    assert "| 64 | 1024 | False | True | additive chunked | 2.500 | nan | 12 |" in text
    lines = r.summary()
    assert len(lines) == 2 and "250.0 TFLOP/s" in lines[0] and "peak 12 MiB" in lines[1]
    assert "TFLOP/s" not in lines[1]
