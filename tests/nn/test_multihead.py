"""MultiHeadAttention against torch.nn.MultiheadAttention, explicit GQA, and per-head loops.

Sizes are distinct per axis (B=2, Nq=5, Nk=7, H=3, Dh=11) so that a transposed
axis cannot pass.
"""

import math

import pytest
import torch
from torch import nn

from attnkit import attention
from attnkit.nn import ALiBiScore, KVCache, MultiHeadAttention, RotaryEmbedding
from attnkit.nn.multihead import KeyMask
from attnkit.scores import Additive, Distance

B, NQ, NK, H, DH = 2, 5, 7, 3, 11
D = H * DH
TIGHT = dict(rtol=1e-12, atol=1e-12)


def _inputs(seed=0, dtype=torch.float64, d=D):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, NQ, d, generator=g, dtype=dtype)
    k = torch.randn(B, NK, d, generator=g, dtype=dtype)
    v = torch.randn(B, NK, d, generator=g, dtype=dtype)
    return q, k, v


def _copy_from_torch(mha: MultiHeadAttention, ref: nn.MultiheadAttention) -> None:
    wq, wk, wv = ref.in_proj_weight.chunk(3)
    bq, bk, bv = ref.in_proj_bias.chunk(3)
    with torch.no_grad():
        for lin, w, b in ((mha.W_q, wq, bq), (mha.W_k, wk, bk), (mha.W_v, wv, bv),
                          (mha.W_o, ref.out_proj.weight, ref.out_proj.bias)):
            lin.weight.copy_(w)
            lin.bias.copy_(b)


@pytest.fixture
def torch_pair():
    torch.manual_seed(1)
    ref = nn.MultiheadAttention(D, H, dropout=0.0, bias=True, batch_first=True).double()
    with torch.no_grad():  # non-zero biases so that copying them is checked
        ref.in_proj_bias.normal_()
        ref.out_proj.bias.normal_()
    mha = MultiHeadAttention(D, H, 0.0, bias=True, keep_weights=True).double()
    _copy_from_torch(mha, ref)
    return mha, ref


def test_matches_torch_multihead_attention_with_key_padding_mask(torch_pair):
    mha, ref = torch_pair
    q, k, v = _inputs()
    valid_lens = torch.tensor([3, 7])
    # torch: True = ignore (padding); attnkit: valid_lens or mask with True = may attend.
    key_padding_mask = torch.arange(NK)[None, :] >= valid_lens[:, None]  # (B, Nk)
    expected, expected_w = ref(q, k, v, key_padding_mask=key_padding_mask,
                               need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(mha(q, k, v, valid_lens), expected, **TIGHT)
    torch.testing.assert_close(mha.attention_weights, expected_w, **TIGHT)
    out_mask = mha(q, k, v, mask=~key_padding_mask[:, None, :])  # (B, 1, Nk)
    torch.testing.assert_close(out_mask, expected, **TIGHT)


def test_matches_torch_multihead_attention_with_attn_mask(torch_pair):
    mha, ref = torch_pair
    q, k, v = _inputs(seed=3)
    g = torch.Generator().manual_seed(4)
    blocked = torch.rand(NQ, NK, generator=g) < 0.4  # torch: True = not allowed
    blocked[:, 0] = False  # every row keeps a key (torch gives NaN rows otherwise)
    expected, expected_w = ref(q, k, v, attn_mask=blocked, need_weights=True,
                               average_attn_weights=False)
    torch.testing.assert_close(mha(q, k, v, mask=~blocked), expected, **TIGHT)
    torch.testing.assert_close(mha.attention_weights, expected_w, **TIGHT)


def test_matches_torch_with_causal_self_attention(torch_pair):
    mha, ref = torch_pair
    x = _inputs(seed=5)[1]  # (B, Nk, d)
    causal_blocked = torch.triu(torch.ones(NK, NK, dtype=torch.bool), 1)
    expected, _ = ref(x, x, x, attn_mask=causal_blocked)
    torch.testing.assert_close(mha(x, x, x, causal=True), expected, **TIGHT)


def _explicit_gqa(mha: MultiHeadAttention, q, k, v, valid_lens):
    """Project, repeat the key/value heads explicitly, softmax in float64, project out."""
    Hq, Hkv, dh = mha.num_heads, mha.num_kv_heads, mha.head_dim
    Q = mha.W_q(q).view(B, -1, Hq, dh).transpose(1, 2)
    K = mha.W_k(k).view(B, -1, Hkv, dh).transpose(1, 2).repeat_interleave(Hq // Hkv, dim=1)
    V = mha.W_v(v).view(B, -1, Hkv, dh).transpose(1, 2).repeat_interleave(Hq // Hkv, dim=1)
    scores = Q @ K.transpose(-1, -2) / math.sqrt(dh)  # (B, H, Nq, Nk)
    keep = torch.arange(K.shape[-2])[None, :] < valid_lens[:, None]  # (B, Nk)
    scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
    out = torch.softmax(scores, -1) @ V  # (B, H, Nq, Dh)
    return mha.W_o(out.transpose(1, 2).reshape(B, -1, Hq * dh))


@pytest.mark.parametrize("num_kv_heads", [1, 2, 4])
def test_grouped_query_attention_equals_explicitly_repeated_heads(num_kv_heads):
    torch.manual_seed(0)
    mha = MultiHeadAttention(4 * 5, 4, num_kv_heads=num_kv_heads, bias=True,
                             keep_weights=True).double()
    assert mha.W_k.out_features == num_kv_heads * 5
    q, k, v = _inputs(seed=6, d=20)
    valid_lens = torch.tensor([2, 6])
    torch.testing.assert_close(mha(q, k, v, valid_lens), _explicit_gqa(mha, q, k, v, valid_lens),
                               **TIGHT)
    assert mha.attention_weights.shape == (B, 4, NQ, NK)
    if num_kv_heads == 1:  # multi-query: heads differ only through their queries
        assert not torch.allclose(mha.attention_weights[:, 0], mha.attention_weights[:, 1])


def test_gqa_with_per_head_mask_matches_loop_over_heads():
    torch.manual_seed(0)
    mha = MultiHeadAttention(4 * 5, 4, num_kv_heads=2).double()
    q, k, v = _inputs(seed=7, d=20)
    mask = torch.rand(B, 4, NQ, NK) < 0.7  # (B, H, Nq, Nk), a different mask per head
    Q = mha.W_q(q).view(B, NQ, 4, 5).transpose(1, 2)
    K = mha.W_k(k).view(B, NK, 2, 5).transpose(1, 2)
    V = mha.W_v(v).view(B, NK, 2, 5).transpose(1, 2)
    heads = [attention(Q[:, h], K[:, h // 2], V[:, h // 2], mask=mask[:, h], backend="reference")
             for h in range(4)]  # each (B, Nq, Dh)
    expected = mha.W_o(torch.stack(heads, 1).transpose(1, 2).reshape(B, NQ, 20))
    torch.testing.assert_close(mha(q, k, v, mask=mask), expected, **TIGHT)


@pytest.mark.parametrize("score", ["dot", "distance", "additive", "bilinear",
                                   Distance(sigma=2.0), Additive(7, DH, DH)])
def test_every_score_is_applied_per_head(score):
    """Output = W_o(concat of single-head attention with the same score on each head)."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, H, score=score, backend="reference").double()
    q, k, v = _inputs(seed=8)
    valid_lens = torch.tensor([4, 1])
    split = lambda X, lin: lin(X).view(B, -1, H, DH)  # noqa: E731  (B, N, H, Dh)
    Q, K, V = split(q, mha.W_q), split(k, mha.W_k), split(v, mha.W_v)
    heads = [attention(Q[:, :, h], K[:, :, h], V[:, :, h], score=mha.score,
                       valid_lens=valid_lens, backend="reference") for h in range(H)]
    expected = mha.W_o(torch.cat(heads, dim=-1))  # head h occupies features h·Dh…(h+1)·Dh
    torch.testing.assert_close(mha(q, k, v, valid_lens), expected, **TIGHT)


def test_weights_on_demand_and_default_path_equal():
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, H, bias=True).double()
    q, k, v = _inputs(seed=9)
    valid_lens = torch.tensor([[1, 2, 3, 4, 5], [7, 0, 7, 3, 2]])  # (B, Nq)
    plain = mha(q, k, v, valid_lens)
    with pytest.raises(RuntimeError, match=r"attention_weights were not kept: .*keep_weights=True"):
        mha.attention_weights  # nothing stored by default, and reading it says so
    mha.keep_weights = True
    torch.testing.assert_close(mha(q, k, v, valid_lens), plain, **TIGHT)
    w = mha.attention_weights
    assert w.shape == (B, H, NQ, NK) and not w.requires_grad
    keep = torch.arange(NK) < valid_lens[:, None, :, None]  # (B, 1, Nq, Nk)
    assert torch.all(w[~keep.expand_as(w)] == 0)
    sums = w.sum(-1)  # (B, H, Nq)
    expected = (valid_lens > 0).double()[:, None, :].expand_as(sums)
    torch.testing.assert_close(sums, expected, **TIGHT)
    # the query with no valid key gets a zero attention row: its output is W_o's bias
    torch.testing.assert_close(plain[1, 1], mha.W_o.bias, **TIGHT)


def test_query_valid_lens_zero_padded_rows_and_keep_the_rest():
    """Padded queries are skipped; keys beyond (B,) valid_lens are not projected."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, H, bias=True).double()
    q, k, v = _inputs(seed=10)
    full = mha(q, k, v, torch.tensor([3, 7]))
    rows = mha(q, k, v, torch.tensor([3, 7]), query_valid_lens=torch.tensor([2, 5]))
    torch.testing.assert_close(rows[0, :2], full[0, :2], **TIGHT)
    torch.testing.assert_close(rows[1], full[1], **TIGHT)
    assert torch.all(rows[0, 2:] == 0)  # padded queries: not computed, zero rows


@pytest.mark.parametrize("kw", [dict(), dict(num_kv_heads=1), dict(bias=False)])
def test_fused_projections_equal_separate_ones_forward_and_gradients(kw):
    """Self-attention projects q, k, v with one product and cross-attention k, v with
    one; passing copies of the input takes the three separate products instead."""
    torch.manual_seed(3)
    mha = MultiHeadAttention(D, H, **{"bias": True, **kw}).double()
    x, mem, _ = _inputs(4)
    lens, mem_lens = torch.tensor([5, 2]), torch.tensor([7, 3])
    cases = [  # (fused call, separate call)
        (lambda: mha(x, x, x, lens, query_valid_lens=lens, causal=True),
         lambda: mha(x, x.clone(), x.clone(), lens, query_valid_lens=lens, causal=True)),
        (lambda: mha(x, mem, mem, mem_lens, query_valid_lens=lens),
         lambda: mha(x, mem, mem.clone(), mem_lens, query_valid_lens=lens)),
    ]
    for fused, separate in cases:
        out = fused()
        grads = torch.autograd.grad(out.square().sum(), list(mha.parameters()))
        want = separate()
        want_grads = torch.autograd.grad(want.square().sum(), list(mha.parameters()))
        torch.testing.assert_close(out, want, **TIGHT)
        for g, w in zip(grads, want_grads):
            torch.testing.assert_close(g, w, **TIGHT)
    # keys valid beyond the valid queries: the keys there must still be projected
    out = mha(x, x, x, torch.tensor([5, 4]), query_valid_lens=lens)
    want = mha(x, x.clone(), x.clone(), torch.tensor([5, 4]), query_valid_lens=lens)
    torch.testing.assert_close(out, want, **TIGHT)
    assert (out[1, 2:] == 0).all() and not torch.allclose(
        out[1, :2], mha(x, x, x, torch.tensor([5, 2]), query_valid_lens=lens)[1, :2])


def test_kv_cache_step_by_step_equals_causal_full_pass():
    torch.manual_seed(0)
    rotary = RotaryEmbedding(6)
    mha = MultiHeadAttention(24, 4, num_kv_heads=2, rotary=rotary, bias=True).double()
    x = torch.randn(B, 9, 24, dtype=torch.float64)
    full = mha(x, x, x, causal=True)
    cache = KVCache()
    steps = [mha(x[:, :4], x[:, :4], x[:, :4], causal="bottom_right", kv_cache=cache)]
    for t in range(4, 9):
        xt = x[:, t:t + 1]
        steps.append(mha(xt, xt, xt, causal="bottom_right", kv_cache=cache))
    assert len(cache) == 9 and cache.keys.shape == (B, 2, 9, 6)
    torch.testing.assert_close(torch.cat(steps, 1), full, **TIGHT)


@pytest.mark.parametrize("grad", [False, True])
def test_kv_cache_reorder_is_applied_with_the_next_append_or_read(grad):
    g = torch.Generator().manual_seed(4)
    k0, v0 = torch.randn(4, 2, 3, 5, generator=g), torch.randn(4, 2, 3, 5, generator=g)
    k1, v1 = torch.randn(3, 2, 1, 5, generator=g), torch.randn(3, 2, 1, 5, generator=g)
    first, then = torch.tensor([3, 3, 0, 1, 2]), torch.tensor([4, 0, 1])  # 4 -> 5 -> 3 rows
    with torch.set_grad_enabled(grad):
        if grad:
            k0.requires_grad_()
        cache = KVCache()
        cache.update(k0, v0)
        cache.reorder(first)
        cache.reorder(then)  # composed: rows first[then] of the stored ones
        assert len(cache) == 3
        keys, values = cache.update(k1, v1)
        rows = first[then]
        torch.testing.assert_close(keys, torch.cat((k0[rows], k1), -2), rtol=0, atol=0)
        torch.testing.assert_close(values, torch.cat((v0[rows], v1), -2), rtol=0, atol=0)
        assert keys.requires_grad == grad
        cache.reorder(torch.tensor([2, 2]))
        assert cache.keys.shape == (2, 2, 4, 5)  # a read applies a pending reorder
        torch.testing.assert_close(cache.values, torch.cat((v0[rows], v1), -2)[[2, 2]],
                                   rtol=0, atol=0)


def test_a_growing_cache_appends_into_its_room_and_earlier_reads_keep_their_content():
    """Outside autograd: each step's key lands in the buffer the cached ones are in (no
    copy of them) until the room is full or rows are selected; a tensor read earlier keeps
    its content; the keys and values always equal the ones appended, rows selected."""
    g = torch.Generator().manual_seed(8)
    cache, ref_k, ref_v = KVCache(), None, None
    orders = {3: torch.tensor([1, 1, 0, 2]), 6: torch.tensor([3, 0]), 7: torch.tensor([1, 0, 1])}
    rows, held, copies = 3, [], 0
    for t in range(20):
        if t in orders:
            cache.reorder(orders[t])
            ref_k, ref_v = ref_k[orders[t]], ref_v[orders[t]]
            rows = orders[t].numel()
        n = 2 if t == 0 else 1
        k, v = torch.randn(rows, 2, n, 5, generator=g), torch.randn(rows, 2, n, 5, generator=g)
        before = None if t == 0 else cache.keys.untyped_storage().data_ptr()
        keys, values = cache.update(k, v)
        ref_k = k if ref_k is None else torch.cat((ref_k, k), -2)
        ref_v = v if ref_v is None else torch.cat((ref_v, v), -2)
        torch.testing.assert_close(keys, ref_k, rtol=0, atol=0)
        torch.testing.assert_close(values, ref_v, rtol=0, atol=0)
        copies += before is not None and keys.untyped_storage().data_ptr() != before
        held.append((keys, ref_k.clone()))
    # new buffers: the first append (t = 1), the 3 selections (the last, at t = 7, made room
    # for 2 · 9 positions) and when that room ran out (t = 17, the 19th position)
    assert copies == 5, copies
    for keys, content in held:
        torch.testing.assert_close(keys, content, rtol=0, atol=0)


def test_a_cache_read_by_rows_selects_rows_without_copying_them():
    """update_by_rows: after selections (beams swapped, repeated, dropped, then more rows
    than the buffers hold) the table points each row at its history, nothing is copied
    while the room lasts, and the keys gathered by the table, read through ``keys``, or
    appended to with update afterwards are those of a cache that copied its rows."""
    g = torch.Generator().manual_seed(9)
    cache, ref_k, ref_v, rows = KVCache(), None, None, 3
    orders = {2: torch.tensor([1, 0, 0]), 3: torch.tensor([2, 2, 1]), 5: torch.tensor([0, 2]),
              6: torch.tensor([1, 0, 1, 0])}
    copies = 0
    for t in range(9):
        if t in orders:
            cache.reorder(orders[t])
            ref_k, ref_v, rows = ref_k[orders[t]], ref_v[orders[t]], orders[t].numel()
        k, v = torch.randn(rows, 2, 1, 5, generator=g), torch.randn(rows, 2, 1, 5, generator=g)
        before = None if t == 0 else cache._keys.untyped_storage().data_ptr()
        K, V, src = cache.update_by_rows(k, v)
        ref_k = k if ref_k is None else torch.cat((ref_k, k), -2)
        ref_v = v if ref_v is None else torch.cat((ref_v, v), -2)
        copies += before is not None and K.untyped_storage().data_ptr() != before
        if src is None:
            got_k, got_v = K, V
        else:
            assert src.shape == (rows, t + 1) and cache.batch_size == rows
            at = torch.arange(t + 1)
            got_k = K.transpose(1, 2)[src, at].transpose(1, 2)
            got_v = V.transpose(1, 2)[src, at].transpose(1, 2)
        torch.testing.assert_close(got_k, ref_k, rtol=0, atol=0)
        torch.testing.assert_close(got_v, ref_v, rtol=0, atol=0)
    # new buffers: the first append into a room (t = 1, room for 4 positions), the fifth
    # position (t = 4, room full: the rows gathered) and four rows for buffers of three
    # (t = 6); the selections at t = 2, 3 and 5 copied nothing
    assert copies == 3, copies
    cache.reorder(torch.tensor([3, 1]))
    torch.testing.assert_close(cache.keys, ref_k[[3, 1]], rtol=0, atol=0)  # gathered
    k = torch.randn(2, 2, 1, 5, generator=g)
    keys, _ = cache.update(k, k)
    torch.testing.assert_close(keys, torch.cat((ref_k[[3, 1]], k), -2), rtol=0, atol=0)


def test_a_growing_cache_refuses_keys_of_another_batch_in_one_line():
    cache = KVCache()
    cache.update(torch.zeros(2, 2, 1, 5), torch.zeros(2, 2, 1, 5))
    cache.reorder(torch.tensor([1, 1, 0]))
    for append in (cache.update, cache.update_by_rows):
        with pytest.raises(ValueError, match=r"kv_cache \(KVCache\(\)\) holds keys of B = 3 "
                                             r"sequences; got keys of B = 2"):
            append(torch.zeros(2, 2, 1, 5), torch.zeros(2, 2, 1, 5))
    static = KVCache(static=True)
    static.update(torch.zeros(2, 2, 4, 5), torch.zeros(2, 2, 4, 5))
    static.update(torch.zeros(1, 2, 4, 5), torch.zeros(1, 2, 4, 5))  # a static one is replaced


def _step_pair(seed=0, **kw):
    torch.manual_seed(seed)
    return MultiHeadAttention(24, 4, bias=True, **kw).double().eval()


@pytest.mark.parametrize("kw", [
    {}, {"num_kv_heads": 2}, {"num_kv_heads": 1, "rotary": RotaryEmbedding(6)},
    {"score": "bilinear", "num_kv_heads": 2}, {"score": "additive"},
    {"score": "distance", "num_kv_heads": 2}, {"score": ALiBiScore(4), "num_kv_heads": 2},
    {"backend": "reference", "rotary": RotaryEmbedding(6)},
], ids=str)
def test_step_equals_forward_for_self_and_cross_attention(kw):
    """step (self: growing cache; cross: static cache with a key mask, a sequence without
    keys) gives forward's outputs, one query at a time (cross-attention without rotary
    positions: they are those of each call there)."""
    mha = _step_pair(**kw)
    g = torch.Generator().manual_seed(6)
    x = torch.randn(3, 5, 24, generator=g, dtype=torch.float64)
    mem = torch.randn(3, 7, 24, generator=g, dtype=torch.float64)
    lens = torch.tensor([7, 3, 0])
    mask = KeyMask.from_lens(lens, 7)
    full_self = mha(x, x, x, causal=True)
    full_cross = mha(x, mem, mem, lens)
    self_cache, cross_cache = KVCache(), KVCache(static=True)
    for t in range(5):
        out = mha.step(x[:, t], self_cache)
        torch.testing.assert_close(out, full_self[:, t], **TIGHT)
        if mha.rotary is None:
            out = mha.step(x[:, t], cross_cache, memory=mem, key_mask=mask)
            torch.testing.assert_close(out, full_cross[:, t], **TIGHT)
    assert len(self_cache) == 5 and len(cross_cache) == (0 if mha.rotary else 7)


def test_step_keeps_the_weights_of_its_query():
    mha = _step_pair(num_kv_heads=2)
    mha.keep_weights = True
    x = torch.randn(2, 4, 24, dtype=torch.float64)
    full = mha(x, x, x, causal=True)
    weights = mha.attention_weights  # (B, H, 4, 4)
    cache = KVCache()
    for t in range(4):
        torch.testing.assert_close(mha.step(x[:, t], cache), full[:, t], **TIGHT)
        assert mha.attention_weights.shape == (2, 4, 1, t + 1)
        torch.testing.assert_close(mha.attention_weights[:, :, 0], weights[:, :, t, :t + 1],
                                   **TIGHT)


def test_key_mask_checks_its_lengths_once():
    with pytest.raises(ValueError, match=r"valid_lens values must lie in \[0, Nk\] = "
                                         r"\[0, 7\]; got min 1, max 8"):
        KeyMask.from_lens(torch.tensor([8, 1]), 7)
    mask = KeyMask.from_lens(torch.tensor([2, 0]), 3)
    assert mask.attend[:, 0, 0].tolist() == [[True, True, False], [True, True, True]]
    assert mask.rows.flatten().tolist() == [True, False]
    assert KeyMask.from_lens(torch.tensor([2, 3]), 3).rows is None
    picked = mask.index_select(torch.tensor([1, 1, 0]))
    assert picked.valid_lens.tolist() == [0, 0, 2] and picked.rows.flatten().tolist() == [
        False, False, True]


def test_static_cache_projects_keys_once():
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, H).double()
    q, k, v = _inputs(seed=11)
    cache = KVCache(static=True)
    first = mha(q, k, v, kv_cache=cache)
    stored = cache.keys
    again = mha(q, k * 0, v * 0, kv_cache=cache)  # keys/values ignored once cached
    assert cache.keys is stored
    torch.testing.assert_close(first, mha(q, k, v), **TIGHT)
    torch.testing.assert_close(again, first, **TIGHT)


def test_different_query_key_value_sizes():
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, H, query_size=13, key_size=17, value_size=19).double()
    g = torch.Generator().manual_seed(0)
    out = mha(torch.randn(B, NQ, 13, generator=g, dtype=torch.float64),
              torch.randn(B, NK, 17, generator=g, dtype=torch.float64),
              torch.randn(B, NK, 19, generator=g, dtype=torch.float64))
    assert out.shape == (B, NQ, D)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, H, 0.1, bias=True, score="additive")
    q, k, v = _inputs(seed=12, dtype=torch.float32)
    mha(q, k, v, torch.tensor([3, 6])).square().sum().backward()
    for name, p in mha.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_bf16_forward_is_finite_and_close_to_float32():
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, H, bias=True)
    q, k, v = _inputs(seed=13, dtype=torch.float32)
    valid_lens = torch.tensor([0, 5])  # includes an empty row
    ref = mha(q, k, v, valid_lens)
    low = mha.to(torch.bfloat16)(q.bfloat16(), k.bfloat16(), v.bfloat16(), valid_lens)
    assert low.dtype == torch.bfloat16 and torch.isfinite(low).all()
    torch.testing.assert_close(low.float(), ref, rtol=0.1, atol=0.1)


def test_validation_messages():
    with pytest.raises(ValueError, match="num_hiddens must be divisible by num_heads"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="num_heads must be divisible by num_kv_heads = 3; got 4"):
        MultiHeadAttention(12, 4, num_kv_heads=3)
    with pytest.raises(ValueError, match="num_heads must be a positive int"):
        MultiHeadAttention(12, 0)
    with pytest.raises(ValueError, match=r"rotary.head_dim must equal .* = 4; got 6"):
        MultiHeadAttention(12, 3, rotary=RotaryEmbedding(6))
    with pytest.raises(ValueError, match=r"score must be one of 'dot', .*; got 'cosine'"):
        MultiHeadAttention(12, 3, score="cosine")
    with pytest.raises(TypeError, match="score must be one of .* or an attnkit.scores.Score"):
        MultiHeadAttention(12, 3, score=3)
    mha = MultiHeadAttention(12, 3)
    x = torch.randn(2, 4, 12)
    with pytest.raises(ValueError, match=r"keys must have shape \(B, N, 12\); got \(2, 4, 5\)"):
        mha(x, torch.randn(2, 4, 5), x)
    with pytest.raises(ValueError, match=r"queries must have shape \(B, N, 12\); got \(4, 12\)"):
        mha(x[0], x, x)
    with pytest.raises(ValueError, match="keys and values must have the same"):
        mha(x, x, x[:, :3])
    with pytest.raises(ValueError, match="mask must have at most 4 dims"):
        mha(x, x, x, mask=torch.ones(1, 1, 1, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask must be broadcastable to \(B, Nq, Nk\) = "
                                         r"\(2, 4, 4\) .* 4-D, to \(B, H, Nq, Nk\) = "
                                         r"\(2, 3, 4, 4\); got \(2, 2, 4, 4\)"):
        mha(x, x, x, mask=torch.ones(2, 2, 4, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask must have dtype torch.bool"):
        mha(x, x, x, mask=torch.ones(4, 4))


@torch.no_grad()
def test_the_step_projection_is_made_once_and_anew_when_the_weights_change():
    """The fused ``[W_q; W_k; W_v]`` of a decoding step is kept between decodings (not
    stacked, or quantized, at every batch), made anew when a weight changes in place or
    is replaced, and not carried by a copy or a pickle of the module; the step still
    equals the forward after each change."""
    import copy
    import pickle

    from attnkit.nn.multihead import KVCache

    torch.manual_seed(0)
    m = MultiHeadAttention(16, 4, 0.0).eval()
    x = torch.randn(3, 16)

    def step_equals_forward():
        out = m.step(x, KVCache())
        torch.testing.assert_close(out, m(x[:, None], x[:, None], x[:, None])[:, 0])

    step_equals_forward()
    first = m._step_projection()
    assert m._step_projection() is first
    m.W_q.weight.mul_(2)  # in place
    step_equals_forward()
    second = m._step_projection()
    assert second is not first
    m.W_k.weight = torch.nn.Parameter(torch.randn_like(m.W_k.weight))  # replaced
    step_equals_forward()
    assert m._step_projection() is not second
    copied = copy.deepcopy(m)
    assert copied._step_projection() is not m._step_projection()
    assert pickle.loads(pickle.dumps(m)) is not None


def test_a_weight_written_without_a_new_version_is_read_anew_after_train_or_eval():
    """A write through ``.data`` (or a fused optimizer step) gives no new version; the
    switch to evaluation drops the kept projections, so inference reads the new weights."""
    torch.manual_seed(0)
    m = MultiHeadAttention(16, 4, 0.0).eval()
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        m(x, x, x)  # keeps the fused projection
    m.train()
    m.W_q.weight.data.mul_(2)
    m.W_v.weight.data.add_(1)
    m.eval()
    want = m(x, x, x)  # gradients on: the weights as they are
    with torch.no_grad():
        torch.testing.assert_close(m(x, x, x), want.detach())


def test_a_module_made_in_inference_mode_steps_after_changes_in_place():
    """Weights made under torch.inference_mode keep no version: nothing is kept for them,
    and a step after a change in place still equals the forward."""
    from attnkit.nn.multihead import KVCache

    with torch.inference_mode():
        torch.manual_seed(0)
        m = MultiHeadAttention(16, 4, 0.0).eval()
        x = torch.randn(3, 16)
        for _ in range(2):
            out = m.step(x, KVCache())
            torch.testing.assert_close(out, m(x[:, None], x[:, None], x[:, None])[:, 0])
            m.W_q.weight.mul_(2)


@pytest.mark.parametrize("score", ["scaled_dot", "dot", "bilinear"])
@pytest.mark.parametrize("kv_heads", [4, 2])
@pytest.mark.parametrize("causal", [False, True])
def test_packed_self_attention_at_inference_matches_the_reference_backend(score, kv_heads, causal):
    """Self-attention of packed rows in eval mode without gradients (an encoder translating)
    runs the compiled packed kernel where it is built (:meth:`_packed_attend`); its output
    equals the same weights on the reference backend, for every dot-form score, grouped-query
    heads, causal or not, sequences of length 0 to the whole width."""
    from attnkit.kernels import cpu_step
    from attnkit.nn.packed import Packed
    torch.manual_seed(3)
    fast = MultiHeadAttention(24, 4, num_kv_heads=kv_heads, score=score).eval()
    ref = MultiHeadAttention(24, 4, num_kv_heads=kv_heads, score=score, backend="reference")
    ref.load_state_dict(fast.state_dict())
    ref.eval()
    X, lens = torch.randn(4, 7, 24), torch.tensor([7, 0, 3, 1])
    packed = Packed.from_lens(lens, 4, 7)
    with torch.no_grad():
        rows = packed.pack(X)
        kernel = fast._packed_attend(fast._projection(fast.W_q, fast.W_k, fast.W_v)(rows),
                                     packed, causal)
        got = fast(X, X, X, lens, query_valid_lens=lens, causal=causal)
        want = ref(X, X, X, lens, query_valid_lens=lens, causal=causal)
    assert (kernel is not None) == (cpu_step.status().lib is not None)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert (got[1] == 0).all() and (got[2, 3:] == 0).all()
    none = torch.zeros(4, dtype=torch.long)  # a batch with no real position at all
    with torch.no_grad():
        empty = fast(X, X, X, none, query_valid_lens=none, causal=causal)
    assert empty.shape == (4, 7, 24) and (empty == 0).all()


def test_packed_self_attention_steps_aside_where_it_does_not_compute_the_module():
    """Gradients, training with dropout, rotary positions, a key bias (distance score),
    kept weights, another backend and keys masked differently from the queries all take
    the general path (``_packed_attend`` answers ``None``)."""
    from attnkit.nn import RotaryEmbedding
    from attnkit.nn.packed import Packed
    torch.manual_seed(4)
    lens = torch.tensor([5, 2])
    packed = Packed.from_lens(lens, 2, 5)

    def answers(mha, grad=False):
        with torch.set_grad_enabled(grad):
            rows = packed.pack(torch.randn(2, 5, 16))
            qkv = mha._projection(mha.W_q, mha.W_k, mha.W_v)(rows)
            return mha._packed_attend(qkv, packed, False)

    assert answers(MultiHeadAttention(16, 2).eval(), grad=True) is None
    assert answers(MultiHeadAttention(16, 2, dropout=0.1).train()) is None
    assert answers(MultiHeadAttention(16, 2, rotary=RotaryEmbedding(8)).eval()) is None
    assert answers(MultiHeadAttention(16, 2, score="distance").eval()) is None
    keep = MultiHeadAttention(16, 2).eval()
    keep.keep_weights = True
    assert answers(keep) is None
    assert answers(MultiHeadAttention(16, 2, backend="reference").eval()) is None
    mha = MultiHeadAttention(16, 2).eval()
    with torch.no_grad():  # keys masked by other lengths than the queries': general path
        X = torch.randn(2, 5, 16)
        got = mha(X, X, X, torch.tensor([3, 2]))
        ref = MultiHeadAttention(16, 2, backend="reference")
        ref.load_state_dict(mha.state_dict())
        torch.testing.assert_close(got, ref.eval()(X, X, X, torch.tensor([3, 2])))
