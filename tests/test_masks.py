import pytest
import torch

from attnkit.masks import causal_mask, combine_masks, key_padding_mask, valid_lens_mask

T, F = True, False


def test_key_padding_mask_hand_case():
    m = key_padding_mask(torch.tensor([2, 4]), 5)
    assert m.tolist() == [[T, T, F, F, F], [T, T, T, T, F]]


def test_valid_lens_mask_1d_and_2d_shapes_and_values():
    m1 = valid_lens_mask(torch.tensor([1, 3]), 2, 4)
    assert m1.shape == (2, 1, 4)
    assert m1[:, 0].tolist() == [[T, F, F, F], [T, T, T, F]]
    m2 = valid_lens_mask(torch.tensor([[1, 3], [2, 4]]), 2, 4)
    assert m2.shape == (2, 2, 4)
    assert m2.tolist() == [[[T, F, F, F], [T, T, T, F]], [[T, T, F, F], [T, T, T, T]]]


def test_causal_square_is_lower_triangular():
    m = causal_mask(4, 4)
    assert torch.equal(m, torch.tril(torch.ones(4, 4, dtype=torch.bool)))
    assert torch.equal(m, causal_mask(4, 4, align="bottom_right"))


def test_causal_alignments_for_fewer_queries_than_keys():
    # the docstring's drawing: Nq = 2, Nk = 5
    assert causal_mask(2, 5, align="top_left").tolist() == [[T, F, F, F, F], [T, T, F, F, F]]
    assert causal_mask(2, 5, align="bottom_right").tolist() == [[T, T, T, T, F],
                                                                [T, T, T, T, T]]


def test_causal_bottom_right_more_queries_than_keys_gives_empty_rows():
    m = causal_mask(4, 2, align="bottom_right")
    assert m.tolist() == [[F, F], [F, F], [T, F], [T, T]]


def test_causal_top_left_matches_sdpa_is_causal():
    q, k, v = torch.randn(1, 3, 4), torch.randn(1, 6, 4), torch.randn(1, 6, 2)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    got = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(3, 6))
    torch.testing.assert_close(got, ref)


def test_combine_masks_ands_with_broadcast_and_skips_none():
    a = key_padding_mask(torch.tensor([2, 3]), 3)[:, None, :]  # (2, 1, 3)
    c = causal_mask(3, 3)  # (3, 3)
    m = combine_masks(a, None, c)
    assert m.shape == (2, 3, 3)
    assert m[0].tolist() == [[T, F, F], [T, T, F], [T, T, F]]
    assert combine_masks(None, None) is None


def test_mask_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"valid_lens must have shape"):
        valid_lens_mask(torch.tensor([[[1]]]), 1, 3)
    with pytest.raises(ValueError,
                       match=r"valid_lens values must lie in \[0, num_keys\] = \[0, 3\]"):
        valid_lens_mask(torch.tensor([4]), 1, 3)
    with pytest.raises(ValueError, match=r"align must be"):
        causal_mask(2, 2, align=False)
    with pytest.raises(ValueError, match=r"causal must be False, True"):
        causal_mask(2, 2, align="diagonal")
    with pytest.raises(ValueError, match=r"num_keys must be a non-negative int; got -1"):
        causal_mask(2, -1)
    with pytest.raises(TypeError, match=r"masks\[1\] must be a boolean tensor"):
        combine_masks(torch.ones(2, dtype=torch.bool), torch.ones(2))
    with pytest.raises(ValueError, match=r"masks\[1\] of shape \(3\) does not broadcast"):
        combine_masks(torch.ones(2, dtype=torch.bool), torch.ones(3, dtype=torch.bool))


def test_prefix_mask_and_causal_lengths_agree_with_causal_mask():
    from attnkit.masks import causal_lengths, prefix_mask

    m = prefix_mask(torch.tensor([[0, 2], [3, 1]]), 3)
    assert m.tolist() == [[[False, False, False], [True, True, False]],
                          [[True, True, True], [True, False, False]]]
    for nq, nk in ((2, 5), (5, 2), (3, 3)):
        for align in ("top_left", "bottom_right"):
            e = causal_lengths(nq, nk, align=align)
            assert e.shape == (nq,) and int(e.min()) >= 0 and int(e.max()) <= nk
            assert torch.equal(prefix_mask(e, nk), causal_mask(nq, nk, align=align))
