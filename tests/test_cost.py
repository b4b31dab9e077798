import pytest
import torch

import attnkit
from attnkit._profiling import peak_memory_bytes
from attnkit.cost import SCORES, attention_cost

B, NQ, NK, D, DV, H = 3, 41, 59, 24, 20, 16


@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize("valid_lens", [None, "1d", "2d"])
def test_peak_memory_model_within_20_percent_of_measured(score, valid_lens):
    dk = 18 if score == "bilinear" else D
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(B, NQ, D, generator=g), torch.randn(B, NK, dk, generator=g), torch.randn(
        B, NK, DV, generator=g)
    s = {"additive": attnkit.Additive(H, D, dk), "bilinear": attnkit.Bilinear(D, dk)}.get(
        score, score)
    vl = {None: None, "1d": torch.tensor([5, 0, NK]),
          "2d": torch.randint(1, NK + 1, (B, NQ), generator=g)}[valid_lens]
    empty = vl is not None and bool((vl == 0).any())

    def run():
        return attnkit.attention(q, k, v, score=s, valid_lens=vl, backend="reference")

    run()  # warm-up: lazy init, thread pools
    measured = peak_memory_bytes(run)
    model = attention_cost(score, batch=B, num_queries=NQ, num_keys=NK, query_size=D,
                           key_size=dk, value_size=DV, num_hiddens=H, valid_lens=valid_lens,
                           empty_rows=empty)
    assert abs(model.peak_bytes - measured) <= 0.2 * measured, (model.peak_bytes, measured)


def test_flops_hand_counts_and_scaling():
    c = attention_cost("dot", batch=2, num_queries=3, num_keys=5, query_size=7, value_size=11)
    # QKᵀ: 2·B·Nq·Nk·D; softmax 5 per score; WV: 2·B·Nq·Nk·Dv
    assert c.flops == 2 * 2 * 3 * 5 * 7 + 5 * 2 * 3 * 5 + 2 * 2 * 3 * 5 * 11
    small = attention_cost("scaled_dot", batch=1, num_queries=256, num_keys=256, query_size=64)
    big = attention_cost("scaled_dot", batch=1, num_queries=512, num_keys=512, query_size=64)
    assert big.peak_bytes == 4 * small.peak_bytes  # quadratic in N
    wide = attention_cost("scaled_dot", batch=1, num_queries=256, num_keys=256, query_size=128)
    assert wide.peak_bytes == small.peak_bytes  # independent of D
    add = attention_cost("additive", batch=1, num_queries=256, num_keys=256, query_size=64,
                         num_hiddens=64)
    # two (Nq, Nk, h) buffers against two (Nq, Nk) ones: h times more
    assert add.peak_bytes >= 64 * small.peak_bytes


def test_issue_example_additive_2gib():
    c = attention_cost("additive", batch=8, num_queries=1024, num_keys=1024, query_size=64,
                       num_hiddens=64)
    features = 8 * 1024 * 1024 * 64 * 4
    assert features == 2 * 2**30
    assert c.peak_bytes >= 2 * features  # features and tanh(features) alive together


def test_cost_errors():
    with pytest.raises(ValueError, match=r"score must be one of"):
        attention_cost("cosine", batch=1, num_queries=1, num_keys=1, query_size=1)
    with pytest.raises(ValueError, match=r"num_hiddens \(h\) is required"):
        attention_cost("additive", batch=1, num_queries=1, num_keys=1, query_size=1)
    with pytest.raises(ValueError, match=r"batch must be a positive int; got 0"):
        attention_cost("dot", batch=0, num_queries=1, num_keys=1, query_size=1)
    with pytest.raises(ValueError, match=r"key_size must be a positive int; got 0"):
        attention_cost("bilinear", batch=1, num_queries=1, num_keys=1, query_size=1, key_size=0)
    with pytest.raises(ValueError, match=r"num_hiddens must be a positive int; got 0"):
        attention_cost("additive", batch=1, num_queries=1, num_keys=1, query_size=1,
                       num_hiddens=0)
    with pytest.raises(ValueError, match=r"num_queries must be a positive int; got True"):
        attention_cost("dot", batch=1, num_queries=True, num_keys=1, query_size=1)
