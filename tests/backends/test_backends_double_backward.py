"""Second-order gradients through every backend: exact, or refused in one line.

A gradient penalty differentiates a gradient (``create_graph=True``). A backend
whose backward is a custom function that is not itself differentiable would make
that second derivative silently zero; each backend must instead give the
reference's (checked by ``gradgradcheck`` in float64 and against ``reference``)
or raise naming itself and ``backend="reference"``.
"""

from __future__ import annotations

import pytest
import torch

import attnkit
from attnkit.backends import explain_backend, first_order_only
from attnkit.backends.chunked import ChunkedBackend
from attnkit.functional import make_call
from attnkit.kernels import cpu_additive
from attnkit.scores import Additive, Bilinear, Distance, Dot, ScaledDot

SCORES = {
    "dot": lambda: Dot(),
    "scaled_dot": lambda: ScaledDot(),
    "bilinear": lambda: Bilinear(2, 2, scaled=True),
    "additive": lambda: Additive(3, 2, 2),
    "distance": lambda: Distance(1.3),
}
MASKINGS = ["none", "valid_lens", "row_valid_lens", "mask", "causal"]
BACKENDS = ["reference", "sdpa", "chunked", "auto"]
B, NQ, NK = 2, 3, 4


def _inputs(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, NQ, 2, generator=g, dtype=dtype, requires_grad=True)
    k = torch.randn(B, NK, 2, generator=g, dtype=dtype, requires_grad=True)
    v = torch.randn(B, NK, 2, generator=g, dtype=dtype, requires_grad=True)
    return q, k, v


def _masking(name: str) -> dict:
    return {
        "none": {},
        "valid_lens": {"valid_lens": torch.tensor([2, 4])},
        "row_valid_lens": {"valid_lens": torch.tensor([[1, 0, 3], [4, 2, 2]])},
        "mask": {"mask": torch.tensor([[True, False, True, True], [False, False, False, False],
                                       [True, True, False, True]])},
        "causal": {"causal": True},
    }[name]


def _score(name: str, dtype=torch.float64):
    torch.manual_seed(3)
    return SCORES[name]().to(dtype)


def _penalty_grads(backend, score, masking, inputs, **kw):
    """Gradients of ``‖∂L/∂(q, k, v)‖²`` w.r.t. the inputs and the score's parameters."""
    q, k, v = inputs
    out = attnkit.attention(q, k, v, score=score, backend=backend, **_masking(masking), **kw)
    loss = (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum()
    first = torch.autograd.grad(loss, [q, k, v], create_graph=True)
    penalty = sum((g ** 2).sum() for g in first)
    wrt = [q, k, v, *score.parameters()]
    return torch.autograd.grad(penalty, wrt, allow_unused=True)


def _serves(backend, score, masking) -> bool:
    q, k, v = _inputs()
    try:
        explain_backend(make_call(q, k, v, score=score, **_masking(masking)), backend)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("masking", MASKINGS)
@pytest.mark.parametrize("score_name", list(SCORES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_second_order_gradients_match_the_reference(backend, score_name, masking):
    score = _score(score_name)
    if not _serves(backend, score, masking):
        pytest.skip(f"{backend} does not serve {score_name} (refused on the forward)")
    inputs = _inputs()

    def f(q, k, v):
        return attnkit.attention(q, k, v, score=score, backend=backend, **_masking(masking))

    assert torch.autograd.gradgradcheck(f, inputs, fast_mode=True)
    got = _penalty_grads(backend, score, masking, inputs)
    want = _penalty_grads("reference", score, masking, inputs)
    for g, w in zip(got, want):
        if w is None:
            assert g is None or not g.any()
        else:
            assert g is not None and torch.allclose(g, w, atol=1e-10), (g, w)
    assert any(w is not None and w.abs().sum() > 0 for w in want)  # a non-trivial case


def test_chunked_second_order_reproduces_its_dropout_masks():
    """With dropout the second-order graph uses the very masks of the forward blocks:
    the penalty's gradient equals one recomputed from the output with the same seed."""
    score = _score("additive")
    grads = []
    for _ in range(2):
        torch.manual_seed(11)
        grads.append(_penalty_grads("chunked", score, "valid_lens", _inputs(), dropout_p=0.4))
    for a, b in zip(*grads):
        assert torch.equal(a, b)
    q, k, v = _inputs()
    torch.manual_seed(11)
    out = attnkit.attention(q, k, v, score=score, backend="chunked", dropout_p=0.4)
    (gq,) = torch.autograd.grad(out.sum(), [q], create_graph=True)
    (gq_plain,) = torch.autograd.grad(out.sum(), [q], retain_graph=True)
    assert torch.allclose(gq, gq_plain, atol=1e-12)  # the graph's gradient is the blocks' one


@pytest.mark.skipif(cpu_additive.status().lib is None, reason="no C compiler")
def test_compiled_additive_blocks_give_second_order_gradients():
    """float32 additive calls run on the compiled kernel; their second-order gradients
    (recomputed in differentiable ops) match the reference's."""
    score = _score("additive", torch.float32)
    inputs = _inputs(torch.float32)
    call = make_call(*inputs, score=score)
    assert ChunkedBackend().additive_choice(call)[0] == "compiled"
    got = _penalty_grads("chunked", score, "valid_lens", inputs)
    want = _penalty_grads("reference", score, "valid_lens", inputs)
    for g, w in zip(got, want):
        assert torch.allclose(g, w, atol=1e-4, rtol=1e-4)


def test_sdpa_refuses_second_order_with_dropout_naming_the_way_out():
    q, k, v = _inputs()
    out = attnkit.attention(q, k, v, backend="sdpa", dropout_p=0.3, causal=True)
    with pytest.raises(RuntimeError, match=r"^backend='sdpa' cannot differentiate its "
                                           r"gradients.*dropout.*backend=\"reference\""):
        torch.autograd.grad(out.sum(), [q], create_graph=True)
    (gq,) = torch.autograd.grad(out.sum(), [q])  # first order still works
    assert gq.abs().sum() > 0


def test_first_order_only_refuses_a_gradient_graph_in_one_line():
    """What the ``triton`` backend wraps its output in (its kernels' backward is not
    differentiable): first order passes through, second order raises by name."""
    x = torch.randn(3, dtype=torch.float64, requires_grad=True)
    y = first_order_only(x ** 3, "triton", "its kernels' backward is not differentiable")
    (g,) = torch.autograd.grad(y.sum(), [x])
    assert torch.allclose(g, 3 * x ** 2)
    with pytest.raises(RuntimeError, match=r"^backend='triton' cannot differentiate its "
                                           r"gradients.*backend=\"reference\""):
        torch.autograd.grad(y.sum(), [x], create_graph=True)
