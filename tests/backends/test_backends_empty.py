"""Empty axes and mixed dtypes: the same answer on every backend, forward and backward.

The decisions (``attnkit.attention``'s docstring, "Empty axes" in ``docs/shapes.md``):
``B``, ``Nq`` or ``Dv`` = 0 give an empty output; ``Nk = 0`` gives zero rows (nothing to
attend to); ``Dq``/``Dk`` = 0 raise ``ValueError``. Gradients are zeros of the inputs'
shapes. Empty calls launch no kernel, so the ``triton`` backend is exercised on CPU by
setting ``TRITON_INTERPRET=1`` for the call only.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

import attnkit
from attnkit.scores import Additive, Bilinear, Distance, Dot, ScaledDot

BACKENDS = ["reference", "sdpa", "chunked", "triton", "auto"]
#: case -> (B, Nq, Nk, D, Dv); distinct sizes per axis elsewhere so no axis can pass
#: for another.
CASES = {
    "B=0": (0, 3, 5, 7, 2),
    "Nq=0": (3, 0, 5, 7, 2),
    "Nk=0": (3, 4, 0, 7, 2),
    "Dv=0": (3, 4, 5, 7, 0),
    "Nq=0,Nk=0": (3, 0, 0, 7, 2),
}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def make_score(name: str, d: int):
    torch.manual_seed(0)
    return {"dot": Dot, "scaled_dot": ScaledDot, "distance": lambda: Distance(1.5),
            "bilinear": lambda: Bilinear(d, d), "additive": lambda: Additive(6, d, d)}[name]()


def use_backend(backend: str, dtype, score_name: str, monkeypatch) -> None:
    """Skip the (backend, dtype, score) triples a backend refuses on this machine."""
    if backend == "triton":
        if importlib.util.find_spec("triton") is None:
            pytest.skip("triton is not installed")
        if not torch.cuda.is_available():
            if dtype == torch.bfloat16:
                pytest.skip("the triton backend takes no bfloat16 under the interpreter")
            monkeypatch.setenv("TRITON_INTERPRET", "1")  # empty calls launch no kernel
    if backend == "sdpa" and score_name == "additive":
        pytest.skip("sdpa serves dot-product scores only")


def inputs(case: str, dtype):
    B, Nq, Nk, D, Dv = CASES[case]
    g = torch.Generator().manual_seed(3)
    return [torch.randn(B, 2, n, d, generator=g).to(dtype).requires_grad_()
            for n, d in ((Nq, D), (Nk, D), (Nk, Dv))]  # (B, H, N, D), H = 2


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
@pytest.mark.parametrize("score_name", ["scaled_dot", "distance", "bilinear", "additive"])
def test_empty_axes_give_zeros_and_zero_gradients(backend, case, dtype, score_name,
                                                  monkeypatch):
    use_backend(backend, dtype, score_name, monkeypatch)
    q, k, v = inputs(case, dtype)
    score = make_score(score_name, q.shape[-1]).to(dtype)
    B, Nq, Nk = q.shape[0], q.shape[2], k.shape[2]
    vl = torch.zeros(B, dtype=torch.long) if Nk == 0 else None
    out = attnkit.attention(q, k, v, score=score, valid_lens=vl, backend=backend)
    assert out.shape == (B, 2, Nq, v.shape[-1]) and out.dtype == dtype
    assert (out == 0).all()
    params = list(score.parameters())
    grads = torch.autograd.grad(out.sum(), [q, k, v, *params])
    for t, g in zip([q, k, v, *params], grads, strict=True):
        assert g.shape == t.shape and g.dtype == t.dtype and (g == 0).all()


@pytest.mark.parametrize("case", list(CASES))
def test_empty_axes_weights(case):
    q, k, _ = inputs(case, torch.float32)
    w = attnkit.attention_weights(q, k)
    assert w.shape == (q.shape[0], 2, q.shape[2], k.shape[2])
    out, w2 = attnkit.attention(*inputs(case, torch.float32), return_weights=True)
    assert w2.shape == w.shape and (out == 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("empty", ["queries", "keys", "both"])
def test_zero_feature_size_is_a_clear_error(backend, empty, monkeypatch):
    use_backend(backend, torch.float32, "scaled_dot", monkeypatch)
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)
    if empty in ("queries", "both"):
        q = q[..., :0]
    if empty in ("keys", "both"):
        k = k[..., :0]
    score = Bilinear(max(q.shape[-1], 1), max(k.shape[-1], 1)) if empty != "both" else "dot"
    with pytest.raises(ValueError, match=r"queries and keys must have feature sizes "
                       r"Dq, Dk >= 1 .*got queries \(2, 3, [04]\) and keys \(2, 5, [04]\)"):
        attnkit.attention(q, k, v, score=score, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nonzero_valid_lens_without_keys_is_out_of_range(backend, monkeypatch):
    use_backend(backend, torch.float32, "scaled_dot", monkeypatch)
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 0, 4), torch.randn(2, 0, 6)
    with pytest.raises(ValueError, match=r"valid_lens values must lie in \[0, Nk\] = \[0, 0\]"):
        attnkit.attention(q, k, v, valid_lens=torch.tensor([1, 0]), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("which,dtypes,match", [
    ("keys", (torch.float16, torch.float32, torch.float16),
     r"queries, keys and values must share one dtype; got torch.float16, torch.float32, "
     r"torch.float16 \(queries is torch.float16, keys is torch.float32\)"),
    ("values", (torch.bfloat16, torch.bfloat16, torch.float32),
     r"\(queries is torch.bfloat16, values is torch.float32\)"),
])
def test_mixed_dtypes_are_named(backend, which, dtypes, match, monkeypatch):
    use_backend(backend, torch.float32, "scaled_dot", monkeypatch)
    q, k, v = (torch.randn(2, 3, n, 4).to(dt) for n, dt in zip((5, 7, 7), dtypes))
    with pytest.raises(TypeError, match=match):
        attnkit.attention(q, k, v, backend=backend)
    with pytest.raises(TypeError, match=match):
        attnkit.attention(q, k, v, backend=backend, return_weights=True)


def test_mixed_dtypes_of_weights_only_calls_are_named():
    q, k = torch.randn(2, 3, 4).half(), torch.randn(2, 5, 4)
    with pytest.raises(TypeError, match=r"queries and keys must share one dtype; got "
                       r"torch.float16, torch.float32 \(queries is torch.float16, keys is "
                       r"torch.float32\)"):
        attnkit.attention_weights(q, k)
