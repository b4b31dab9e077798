"""The functional API against float64 oracles; distinct primes per axis."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import attnkit
from attnkit import attention, attention_weights, explain_backend
from attnkit.masks import causal_mask
from attnkit.scores import Additive, Bilinear, Distance, Dot, ScaledDot
from tests.d2l_reference import dense_reference

B, NQ, NK, D, DV, H, DK_BILINEAR = 3, 5, 7, 11, 13, 17, 19


def make_score(name, dtype=torch.float64):
    torch.manual_seed(1)
    if name == "bilinear":
        return Bilinear(D, DK_BILINEAR).to(dtype)
    if name == "additive":
        return Additive(H, D, D).to(dtype)
    return {"dot": Dot(), "scaled_dot": ScaledDot(), "distance": Distance(1.3)}[name]


def make_inputs(name, dtype=torch.float64, nq=NQ, nk=NK, seed=0):
    g = torch.Generator().manual_seed(seed)
    dk = DK_BILINEAR if name == "bilinear" else D
    q = torch.randn(B, nq, D, generator=g, dtype=dtype)
    k = torch.randn(B, nk, dk, generator=g, dtype=dtype)
    v = torch.randn(B, nk, DV, generator=g, dtype=dtype)
    return q, k, v


SCORES = ["dot", "scaled_dot", "bilinear", "additive", "distance"]


def full_mask(valid_lens, causal, nq, nk, user_mask=None):
    m = torch.ones(B, nq, nk, dtype=torch.bool)
    if valid_lens is not None:
        vl = valid_lens[:, None] if valid_lens.ndim == 1 else valid_lens
        m &= torch.arange(nk) < vl[:, :, None]
    if causal:
        m &= causal_mask(nq, nk, align=causal)
    if user_mask is not None:
        m &= user_mask
    return m


@pytest.mark.parametrize("name", SCORES)
@pytest.mark.parametrize("vl_kind", [None, "1d", "2d"])
@pytest.mark.parametrize("causal", [None, "top_left", "bottom_right"])
def test_matches_float64_oracle(name, vl_kind, causal):
    q, k, v = make_inputs(name)
    score = make_score(name)
    valid_lens = {None: None, "1d": torch.tensor([0, 4, NK]),
                  "2d": torch.tensor([[0, 1, 2, 3, 7], [7, 0, 5, 5, 2], [1, 1, 1, 6, 0]])}[vl_kind]
    out = attention(q, k, v, score=score, valid_lens=valid_lens, causal=causal or False,
                    backend="reference")
    w = attention_weights(q, k, score=score, valid_lens=valid_lens, causal=causal or False)
    want_out, want_w = dense_reference(q, k, v, lambda a, b: score(a, b),
                                       full_mask(valid_lens, causal, NQ, NK))
    assert out.shape == (B, NQ, DV) and w.shape == (B, NQ, NK)
    torch.testing.assert_close(out, want_out, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(w, want_w, rtol=1e-10, atol=1e-12)


def test_user_mask_with_valid_lens_and_nq_greater_than_nk():
    q, k, v = make_inputs("scaled_dot", nq=NK + 4, nk=NK)
    user = torch.rand(B, NK + 4, NK, generator=torch.Generator().manual_seed(3)) > 0.3
    vl = torch.tensor([3, 0, 7])
    out = attention(q, k, v, valid_lens=vl, mask=user, causal="bottom_right")
    want, _ = dense_reference(q, k, v, ScaledDot(), full_mask(vl, "bottom_right", NK + 4, NK, user))
    torch.testing.assert_close(out, want, rtol=1e-10, atol=1e-12)
    assert torch.equal(out[1], torch.zeros(NK + 4, DV, dtype=torch.float64))


def test_empty_rows_give_zero_output():
    q, k, v = make_inputs("dot")
    out = attention(q, k, v, score="dot", valid_lens=torch.tensor([0, 0, 0]))
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("name", SCORES)
def test_gradcheck_with_empty_row(name):
    q, k, v = (t[:2, :3, :] for t in make_inputs(name))
    score = make_score(name)
    vl = torch.tensor([0, 2])
    inputs = [t.clone().requires_grad_() for t in (q, k, v)]
    params = [p for p in score.parameters()]

    def f(q, k, v, *ps):
        return attention(q, k, v, score=score, valid_lens=vl, backend="reference")

    assert torch.autograd.gradcheck(f, (*inputs, *params))
    # and the gradient of the empty row's query is exactly zero
    out = f(*inputs)
    out.sum().backward()
    assert torch.equal(inputs[0].grad[0], torch.zeros_like(inputs[0].grad[0]))


def test_gradcheck_2d_valid_lens_and_causal():
    q, k, v = (t[:2].clone().requires_grad_() for t in make_inputs("scaled_dot"))
    vl = torch.tensor([[0, 2, 7, 1, 3], [4, 4, 0, 7, 6]])
    assert torch.autograd.gradcheck(
        lambda q, k, v: attention(q, k, v, valid_lens=vl, causal="bottom_right"), (q, k, v))


def test_extra_leading_dims_like_heads():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, NQ, D, generator=g)  # (B, H, Nq, D)
    k = torch.randn(2, 3, NK, D, generator=g)
    v = torch.randn(2, 1, NK, DV, generator=g)  # broadcast over heads
    vl = torch.tensor([2, 6])
    out = attention(q, k, v, valid_lens=vl)
    assert out.shape == (2, 3, NQ, DV)
    for h in range(3):
        torch.testing.assert_close(out[:, h], attention(q[:, h], k[:, h], v[:, 0], valid_lens=vl))


def test_book_toy_examples_shapes_and_semantics():
    torch.manual_seed(0)
    queries = torch.normal(0, 1, (2, 1, 2))
    keys = torch.normal(0, 1, (2, 10, 2))
    values = torch.normal(0, 1, (2, 10, 4))
    valid_lens = torch.tensor([2, 6])
    for score in ("dot", "scaled_dot"):
        out = attention(queries, keys, values, score=score, valid_lens=valid_lens)
        w = attention_weights(queries, keys, score=score, valid_lens=valid_lens)
        assert out.shape == (2, 1, 4) and w.shape == (2, 1, 10)
        assert torch.equal(w[0, :, 2:], torch.zeros(1, 8)) and torch.equal(w[1, :, 6:],
                                                                           torch.zeros(1, 4))
    additive = Additive(8)
    q20 = torch.normal(0, 1, (2, 1, 20))
    out = attention(q20, keys, values, score=additive, valid_lens=valid_lens)
    w = attention_weights(q20, keys, score=additive, valid_lens=valid_lens)
    assert out.shape == (2, 1, 4)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 1))
    assert torch.equal(w[1, :, 6:], torch.zeros(1, 4))


@pytest.mark.parametrize("name", SCORES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_runs_without_nan_and_keeps_dtype(name, dtype):
    q, k, v = make_inputs(name, dtype=torch.float32)
    score = make_score(name, torch.float32).to(dtype)
    out = attention(q.to(dtype), k.to(dtype), v.to(dtype), score=score,
                    valid_lens=torch.tensor([0, 3, 7]), causal=True)
    assert out.dtype == dtype and torch.isfinite(out).all()
    ref = attention(q, k, v, score=make_score(name, torch.float32),
                    valid_lens=torch.tensor([0, 3, 7]), causal=True)
    assert (out.float() - ref).abs().max() < 0.1


def test_dropout_keeps_fraction_and_rescales():
    torch.manual_seed(0)
    q = torch.zeros(4, 64, 8)  # uniform weights 1/Nk over valid keys
    k = torch.randn(4, 50, 8)
    v = torch.ones(4, 50, 1)
    p = 0.3
    out = attention(q, k, v, valid_lens=torch.tensor([50, 50, 50, 50]), dropout_p=p)
    # each output = (kept count) / ((1 - p') · 50), p' = p rounded to a multiple of 2^-16 by
    # attnkit's CPU dropout (SDPA's own dropout, where that kernel is not built, scales by
    # 1 / (1 - p): 4.6e-6 relative apart, within the tolerance); its mean is 1
    kept = out.flatten() * (1 - round(p * 2**16) / 2**16) * 50
    torch.testing.assert_close(kept, kept.round(), atol=5e-4, rtol=0)  # integer counts
    assert abs(out.mean().item() - 1.0) < 0.03
    assert abs(kept.mean().item() / 50 - (1 - p)) < 0.02
    no_drop = attention(q, k, v, dropout_p=0.0)
    torch.testing.assert_close(no_drop, torch.ones_like(no_drop))


def test_backend_is_explicit():
    q, k, v = make_inputs("dot")
    with pytest.raises(ValueError, match=r"backend must be one of 'auto', .*; got 'fast'"):
        attention(q, k, v, backend="fast")
    choice = explain_backend(q, k, v, score=make_score("additive"))
    assert choice.requested == "auto" and choice.name in attnkit.backends.available_backends()
    assert explain_backend(q, k, v, backend="reference").name == "reference"


class _Refuses(attnkit.backends.Backend):
    name = "refuses-test"

    def unsupported_reason(self, call):
        return "never serves"


def test_backend_that_cannot_serve_raises_and_auto_passes_over_it():
    attnkit.backends.register_backend(_Refuses(), auto_position=0)
    try:
        q, k, v = make_inputs("dot")
        with pytest.raises(ValueError, match=r"backend='refuses-test' cannot serve this call: "
                                             r"never serves"):
            attention(q, k, v, backend="refuses-test")
        choice = explain_backend(q, k, v)
        assert choice.passed_over["refuses-test"] == "never serves"
        assert "not refuses-test: never serves" in str(choice)
    finally:
        attnkit.backends.AUTO_ORDER.remove("refuses-test")
        attnkit.backends._REGISTRY.pop("refuses-test")


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(SCORES), seed=st.integers(0, 10_000), data=st.data())
def test_property_padding_content_is_ignored(name, seed, data):
    q, k, v = make_inputs(name, seed=seed)
    score = make_score(name)
    vl = torch.tensor(data.draw(st.lists(st.integers(0, NK), min_size=B, max_size=B)))
    out = attention(q, k, v, score=score, valid_lens=vl)
    pad = torch.arange(NK)[None, :, None] >= vl[:, None, None]  # (B, Nk, 1)
    k2 = torch.where(pad, torch.randn_like(k) * 100, k)
    v2 = torch.where(pad, torch.randn_like(v) * 100, v)
    torch.testing.assert_close(attention(q, k2, v2, score=score, valid_lens=vl), out)


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(SCORES), seed=st.integers(0, 10_000), data=st.data())
def test_property_permuting_valid_pairs_together_changes_nothing(name, seed, data):
    q, k, v = make_inputs(name, seed=seed)
    score = make_score(name)
    n = data.draw(st.integers(1, NK))
    vl = torch.full((B,), n)
    perm = torch.tensor(data.draw(st.permutations(range(n))) + list(range(n, NK)))
    out = attention(q, k, v, score=score, valid_lens=vl)
    torch.testing.assert_close(attention(q, k[:, perm], v[:, perm], score=score, valid_lens=vl),
                               out)


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(SCORES), seed=st.integers(0, 10_000), data=st.data())
def test_property_weights_sum_to_one_over_valid_keys(name, seed, data):
    q, k, _ = make_inputs(name, seed=seed)
    rows = data.draw(st.lists(st.lists(st.integers(0, NK), min_size=NQ, max_size=NQ),
                              min_size=B, max_size=B))
    vl = torch.tensor(rows)
    w = attention_weights(q, k, score=make_score(name), valid_lens=vl)
    beyond = torch.arange(NK)[None, None, :] >= vl[:, :, None]
    assert torch.equal(w[beyond], torch.zeros_like(w[beyond]))
    torch.testing.assert_close(w.sum(-1), (vl > 0).double())


@pytest.mark.parametrize("name", SCORES)
def test_return_weights_gives_the_reference_weights_and_their_output(name):
    q, k, v = make_inputs(name)
    score = make_score(name)
    vl = torch.tensor([[0, 1, 2, 3, 7], [7, 0, 5, 5, 2], [1, 1, 1, 6, 0]])
    qvl = torch.tensor([5, 3, 0])
    out, w = attention(q, k, v, score=score, valid_lens=vl, causal="bottom_right",
                       query_valid_lens=qvl, return_weights=True)
    mask = full_mask(vl, "bottom_right", NQ, NK) & (torch.arange(NQ) < qvl[:, None])[..., None]
    want_out, want_w = dense_reference(q, k, v, lambda a, b: score(a, b), mask)
    assert out.shape == (B, NQ, DV) and w.shape == (B, NQ, NK)
    torch.testing.assert_close(w, want_w, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out, want_out, rtol=1e-10, atol=1e-12)
    assert torch.equal(out, attention(q, k, v, score=score, valid_lens=vl, causal="bottom_right",
                                      query_valid_lens=qvl, backend="reference"))


def test_return_weights_with_heads_and_dropout_returns_weights_before_dropout():
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(B, 2, n, d, generator=g, dtype=torch.float64)
               for n, d in ((NQ, D), (NK, D), (NK, D)))
    vl = torch.tensor([2, NK, 5])
    torch.manual_seed(7)
    out, w = attention(q, k, v, valid_lens=vl, dropout_p=0.4, return_weights=True)
    want_w = attention_weights(q, k, valid_lens=vl)  # (B, 2, Nq, Nk), no dropout
    torch.testing.assert_close(w, want_w, rtol=0, atol=0)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, 2, NQ, dtype=torch.float64))
    torch.manual_seed(7)
    dropped = torch.nn.functional.dropout(want_w, 0.4)  # the same draw
    torch.testing.assert_close(out, dropped @ v, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(out, w @ v)


def test_return_weights_checks_the_backend_name():
    q, k, v = make_inputs("dot")
    with pytest.raises(ValueError, match="backend must be one of 'auto', "):
        attention(q, k, v, backend="nope", return_weights=True)


def test_call_prefix_lengths_combine_valid_lens_causal_and_padded_queries():
    from attnkit.functional import make_call

    q = torch.randn(2, 3, 4, 5)  # (B, H, Nq, D)
    k = torch.randn(2, 3, 6, 5)  # Nk = 6
    call = make_call(q, k, k, valid_lens=torch.tensor([3, 6]), causal="bottom_right",
                     query_valid_lens=torch.tensor([4, 2]))
    e = call.prefix_lengths()  # bottom-right: row i sees keys j <= i + 2
    assert e.tolist() == [[3, 3, 3, 3], [3, 4, 0, 0]]
    assert torch.equal(call.prefix_lengths(fold=True), e.repeat_interleave(3, dim=0))
    mask = call.full_mask().expand(2, 3, 4, 6)
    assert torch.equal(mask.sum(-1), e[:, None, :].expand(2, 3, 4))


def test_choose_backend_is_a_deprecated_name_of_explain_backend():
    """The old name gives the same answer, with a warning that names the new one."""
    q, k, v = make_inputs("dot")
    with pytest.warns(DeprecationWarning, match=r"^attnkit.choose_backend is deprecated: it "
                                                r"is now called attnkit.explain_backend$"):
        old = attnkit.choose_backend(q, k, v, backend="reference")
    assert old == explain_backend(q, k, v, backend="reference")
    assert "choose_backend" in attnkit.__all__ and "explain_backend" in attnkit.__all__
