"""``backend="triton"`` through the public API (Triton's interpreter on CPU, no GPU needed)."""

import pytest
import torch

import attnkit
from attnkit import attention
from attnkit.scores import Additive, Bilinear, Distance, ScaledDot
from tests.kernels._reference import check_against_baseline

pytest.importorskip("triton")
if not torch.cuda.is_available() and __import__("os").environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("TRITON_INTERPRET=1 must be set before triton is imported", allow_module_level=True)

B, H, NQ, NK, D, DV = 2, 3, 17, 33, 24, 20


def scores():
    torch.manual_seed(0)
    return {"scaled_dot": ScaledDot(), "distance": Distance(2.0),
            "bilinear": Bilinear(D, D), "additive": Additive(12, D, D)}


@pytest.mark.parametrize("name", ["scaled_dot", "distance", "bilinear", "additive"])
@pytest.mark.parametrize("causal", [False, "top_left", "bottom_right"])
def test_triton_backend_matches_reference_forward_and_backward(name, causal):
    g = torch.Generator().manual_seed(1)
    shape = (B, NQ, D) if name == "additive" else (B, H, NQ, D)
    q = torch.randn(*shape, generator=g)
    k = torch.randn(*shape[:-2], NK, D, generator=g)
    v = torch.randn(*shape[:-2], NK, DV, generator=g)
    vl = torch.tensor([[0, 3, 33, 1, 5, 9, 2, 33, 0, 4, 17, 20, 6, 1, 1, 8, 2],
                       [33] * NQ])
    score = scores()[name]
    results = {}
    for backend, dtype in (("triton", torch.float32), ("reference", torch.float32),
                           ("oracle", torch.float64)):
        s = score.to(dtype)
        ins = [t.detach().clone().to(dtype).requires_grad_() for t in (q, k, v)]
        out = attention(*ins, score=s, valid_lens=vl, causal=causal,
                        backend="reference" if backend == "oracle" else backend)
        out.backward(torch.ones_like(out))
        grads = [t.grad for t in ins] + [p.grad.clone() for p in s.parameters()]
        results[backend] = (out.detach(), grads)
        s.zero_grad()
        score.to(torch.float32)
    names = ["q", "k", "v"] + [n for n, _ in score.named_parameters()]
    check_against_baseline(results["triton"], results["reference"], results["oracle"],
                           floor=1e-5, names=names)
    first_row = results["triton"][0][0, ..., 0, :]  # valid length 0: sees nothing
    assert torch.equal(first_row, torch.zeros_like(first_row))


def test_auto_never_picks_triton_on_cpu_but_names_the_reason():
    q = torch.randn(2, 5, 8)
    choice = attnkit.explain_backend(q, q, q, score=Additive(4, 8, 8))
    assert choice.name != "triton"
    assert "auto uses triton on CUDA tensors only" in choice.passed_over["triton"]


def test_triton_refuses_what_it_cannot_serve():
    q = torch.randn(2, 5, 8)
    with pytest.raises(ValueError, match=r"backend='triton' cannot serve this call: a boolean "
                                         r"mask="):
        attention(q, q, q, mask=torch.ones(5, 5, dtype=torch.bool), backend="triton")
    with pytest.raises(ValueError, match=r"cannot serve this call: bfloat16 under the Triton "
                                         r"interpreter"):
        attention(q.bfloat16(), q.bfloat16(), q.bfloat16(), backend="triton")
    with pytest.raises(ValueError, match=r"dropout with additive scores"):
        attention(q, q, q, score=Additive(4, 8, 8), dropout_p=0.1, backend="triton")
