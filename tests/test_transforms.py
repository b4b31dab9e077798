"""``torch.func`` transforms, ``torch.jit``, inference mode, deterministic mode and
meta tensors over :func:`attnkit.attention` and the modules: the reference's answer,
or one line saying what to do instead."""

from __future__ import annotations

import pytest
import torch

import attnkit
from attnkit.nn import DotProductAttention, MultiHeadAttention
from attnkit.scores import Additive

FAST = ["sdpa", "chunked"]
BACKENDS = ["auto", "reference", *FAST]


def _qkv(n=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    lead = () if n is None else (n,)
    return (torch.randn(*lead, 2, 3, 4, generator=g), torch.randn(*lead, 2, 5, 4, generator=g),
            torch.randn(*lead, 2, 5, 3, generator=g))


@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize("batched_lens", [False, True])
def test_vmap_gives_the_per_sample_answers(backend, batched_lens):
    q, k, v = _qkv(4)
    lens = torch.tensor([[0, 5], [2, 3], [5, 1], [4, 4]])  # an empty row in sample 0
    if not batched_lens:
        lens = lens[1]

    def f(q, k, v, lens):
        return attnkit.attention(q, k, v, valid_lens=lens, causal="bottom_right",
                                 backend=backend)

    got = torch.func.vmap(f, in_dims=(0, 0, 0, 0 if batched_lens else None))(q, k, v, lens)
    want = torch.stack([f(q[i], k[i], v[i], lens[i] if batched_lens else lens)
                        for i in range(4)])
    assert torch.allclose(got, want, atol=1e-6)
    assert got.abs().sum() > 0


@pytest.mark.parametrize("backend", FAST)
def test_fast_backends_under_vmap_refuse_in_one_line(backend):
    q, k, v = _qkv(2)
    f = torch.func.vmap(lambda q, k, v: attnkit.attention(q, k, v, backend=backend))
    with pytest.raises(ValueError, match=rf"^backend='{backend}' cannot serve this call: "
                                         r"inside a torch.func transform.*only 'reference'"):
        f(q, k, v)


@pytest.mark.parametrize("score", ["scaled_dot", "additive"])
def test_grad_and_jacrev_match_autograd(score):
    score = Additive(3, 4, 4) if score == "additive" else score
    q, k, v = _qkv()
    lens = torch.tensor([2, 5])

    def f(q):
        return attnkit.attention(q, k, v, score=score, valid_lens=lens)

    qr = q.clone().requires_grad_()
    (want,) = torch.autograd.grad(f(qr).square().sum(), [qr])
    assert torch.allclose(torch.func.grad(lambda q: f(q).square().sum())(q), want, atol=1e-6)
    jac = torch.func.jacrev(f)(q)  # (B, Nq, Dv, B, Nq, Dq)
    assert jac.shape == (2, 3, 3, 2, 3, 4)
    assert torch.allclose(jac.sum((0, 1, 2)), torch.autograd.grad(f(qr).sum(), [qr])[0],
                          atol=1e-6)


def test_traced_attention_follows_the_lengths_it_is_given():
    """A trace must not fix the plan or the shortcuts of its example lengths into the
    graph: traced on lengths with no empty row, run on lengths with one."""
    q, k, v = _qkv()

    def f(q, k, v, lens):
        return attnkit.attention(q, k, v, valid_lens=lens)

    traced = torch.jit.trace(f, (q, k, v, torch.tensor([5, 5])), check_trace=False)
    for lens in (torch.tensor([0, 2]), torch.tensor([3, 1])):
        want = f(q, k, v, lens)
        assert torch.allclose(traced(q, k, v, lens), want, atol=1e-6), lens


def test_traced_module_follows_the_lengths_it_is_given():
    torch.manual_seed(0)
    mha = MultiHeadAttention(num_hiddens=8, num_heads=2).eval()
    x = torch.randn(2, 4, 8)
    traced = torch.jit.trace(mha, (x, x, x, torch.tensor([4, 4])), check_trace=False)
    lens = torch.tensor([1, 3])
    assert torch.allclose(traced(x, x, x, lens), mha(x, x, x, lens), atol=1e-6)


@pytest.mark.parametrize("target", [attnkit.attention, attnkit.attention_weights,
                                    DotProductAttention(), MultiHeadAttention(8, 2)])
def test_script_refuses_in_one_line(target):
    with pytest.raises(TypeError, match=r"^torch.jit.script cannot compile attnkit "
                                        r"attention.*torch.jit.trace"):
        torch.jit.script(target)


@pytest.mark.parametrize("backend", BACKENDS)
def test_inference_and_deterministic_modes_give_the_reference(backend):
    q, k, v = _qkv()
    kw = {"valid_lens": torch.tensor([0, 4]), "causal": True}
    want = attnkit.attention(q, k, v, backend="reference", **kw)
    with torch.inference_mode():
        assert torch.allclose(attnkit.attention(q, k, v, backend=backend, **kw), want,
                              atol=1e-6)
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        qr = q.clone().requires_grad_()
        out = attnkit.attention(qr, k, v, backend=backend, **kw)
        out.sum().backward()
    finally:
        torch.use_deterministic_algorithms(was)
    assert torch.allclose(out, want, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_meta_tensors_give_shapes_or_refuse_by_name(backend):
    q, k, v = (t.to("meta") for t in _qkv())
    lens = torch.tensor([1, 4], device="meta")
    if backend in FAST:
        with pytest.raises(ValueError, match=rf"^backend='{backend}'.*meta tensors"):
            attnkit.attention(q, k, v, valid_lens=lens, backend=backend)
    else:
        out = attnkit.attention(q, k, v, valid_lens=lens, backend=backend)
        assert out.shape == (2, 3, 3) and out.device.type == "meta"
