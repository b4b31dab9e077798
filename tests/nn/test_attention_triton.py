"""Lazy sizes on the triton backend: AdditiveAttention(num_hiddens, dropout, backend="triton")
infers its sizes before the kernel reads the parameters (Triton interpreter on CPU)."""

import os

import pytest
import torch

pytest.importorskip("triton")
if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("TRITON_INTERPRET=1 must be set before triton is imported", allow_module_level=True)

from attnkit.nn import AdditiveAttention  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("backend", ["triton", "chunked", "reference"])
def test_lazy_additive_attention_first_call_on_every_backend(backend):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, 20, generator=g).to(DEVICE)
    k = torch.randn(2, 10, 2, generator=g).to(DEVICE)
    v = torch.randn(2, 10, 4, generator=g).to(DEVICE)
    valid_lens = torch.tensor([2, 6], device=DEVICE)
    torch.manual_seed(1)
    lazy = AdditiveAttention(8, 0.1, backend=backend).to(DEVICE).eval()
    out = lazy(q, k, v, valid_lens)  # the first call: sizes inferred, then the kernel
    assert out.shape == (2, 3, 4)
    assert lazy.W_q.weight.shape == (8, 20) and lazy.W_k.weight.shape == (8, 2)
    ref = AdditiveAttention(8, 0.1, query_size=20, key_size=2, backend="reference")
    ref.load_state_dict(lazy.state_dict())
    torch.testing.assert_close(out, ref.to(DEVICE).eval()(q, k, v, valid_lens),
                               rtol=1e-5, atol=1e-5)
