import torch

from attnkit.bench.gpu import main, needed_flops


def test_needed_flops_counts_valid_and_causal_keys_only():
    lens = torch.tensor([4, 2])
    # non-causal: every query row sees L keys; 4·d·H per (query, key) pair
    assert needed_flops(lens, 4, 8, 2, False) == 4 * 8 * 2 * (4 * 4 + 4 * 2)
    # causal: row i sees min(i + 1, L) keys
    assert needed_flops(lens, 4, 8, 2, True) == 4 * 8 * 2 * ((1 + 2 + 3 + 4) + (1 + 2 + 2 + 2))


def test_gpu_bench_refuses_without_cuda(capsys):
    if torch.cuda.is_available():
        return
    assert main(["--quick"]) == 2
    assert "needs a CUDA device" in capsys.readouterr().out
