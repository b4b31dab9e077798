import math

import pytest
import torch

from attnkit.scores import Additive, Bilinear, Distance, Dot, ScaledDot, make_score

q = torch.tensor([[[1.0, 2.0]]])  # (1, 1, 2)
k = torch.tensor([[[3.0, -1.0], [0.5, 0.5], [0.0, 0.0]]])  # (1, 3, 2)


def test_dot_hand_values():
    assert Dot()(q, k).tolist() == [[[1.0, 1.5, 0.0]]]


def test_scaled_dot_hand_values():
    got = ScaledDot()(q, k)
    torch.testing.assert_close(got, torch.tensor([[[1.0, 1.5, 0.0]]]) / math.sqrt(2))
    torch.testing.assert_close(ScaledDot(scale=0.5)(q, k), torch.tensor([[[0.5, 0.75, 0.0]]]))


def test_bilinear_hand_values_different_sizes():
    s = Bilinear(2, 3)
    with torch.no_grad():
        s.M.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, -1.0, 1.0]]))
    keys = torch.tensor([[[1.0, 1.0, 1.0], [0.0, 2.0, 0.0]]])  # (1, 2, 3)
    # qᵀM = [1, -2, 4]; · k0 = 3; · k1 = -4
    assert s(q, keys).tolist() == [[[3.0, -4.0]]]


def test_additive_hand_values():
    s = Additive(2, 2, 2)
    with torch.no_grad():
        s.W_q.weight.copy_(torch.eye(2))
        s.W_k.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        s.w_v.weight.copy_(torch.tensor([[1.0, -1.0]]))
    got = s(q, k)
    want = [math.tanh(1 + kk[0]) - math.tanh(2.0) for kk in k[0].tolist()]
    torch.testing.assert_close(got[0, 0], torch.tensor(want))


def test_distance_hand_values_and_from_norms():
    s = Distance(sigma=2.0)
    want = [-((1 - a) ** 2 + (2 - b) ** 2) / 8 for a, b in k[0].tolist()]
    torch.testing.assert_close(s(q, k)[0, 0], torch.tensor(want))


def test_distance_dot_form_gives_same_softmax():
    qq, kk = torch.randn(3, 5, 7, dtype=torch.float64), torch.randn(3, 11, 7, dtype=torch.float64)
    s = Distance(sigma=1.7)
    f = s.as_dot(qq, kk)
    via_dot = f.scale * qq @ kk.transpose(-1, -2) + f.key_bias[..., None, :]
    torch.testing.assert_close(torch.softmax(via_dot, -1), torch.softmax(s(qq, kk), -1))


def test_bilinear_dot_form_folds_M_into_queries():
    s = Bilinear(5, 3, scaled=True).double()
    qq, kk = torch.randn(2, 4, 5, dtype=torch.float64), torch.randn(2, 6, 3, dtype=torch.float64)
    f = s.as_dot(qq, kk)
    torch.testing.assert_close(f.scale * f.queries @ f.keys.transpose(-1, -2), s(qq, kk))


def test_additive_has_no_dot_form_and_lazy_sizes():
    s = Additive(4)
    assert s.as_dot(q, k) is None
    s(q, torch.randn(1, 3, 5))  # infers Dq=2, Dk=5
    assert s.W_q.weight.shape == (4, 2) and s.W_k.weight.shape == (4, 5)


def test_make_score_without_a_size():
    assert isinstance(make_score("dot"), Dot)
    assert isinstance(make_score("scaled_dot"), ScaledDot)
    assert isinstance(make_score("distance"), Distance)
    with pytest.raises(ValueError, match=r"score='additive' carries learned parameters.*Additive"):
        make_score("additive")
    with pytest.raises(ValueError, match=r"score must be one of .*got 'cosine'"):
        make_score("cosine")
    with pytest.raises(TypeError,
                       match=r"score must be one of .* or an attnkit.scores.Score; got 3$"):
        make_score(3)


def test_constructor_errors():
    with pytest.raises(ValueError, match=r"sigma must be a finite number > 0; got 0"):
        Distance(0)
    with pytest.raises(ValueError, match=r"key_size must be a positive int; got -3"):
        Bilinear(2, -3)
    with pytest.raises(ValueError, match=r"num_hiddens must be a positive int; got 0"):
        Additive(0)


def test_score_registry_builds_every_name_for_a_head_size():
    from attnkit.scores import SCORE_NAMES, SCORE_REGISTRY, make_score

    assert SCORE_NAMES == ("dot", "scaled_dot", "distance", "additive", "bilinear")
    assert SCORE_NAMES == tuple(SCORE_REGISTRY)
    qq, kk = torch.randn(2, 3, 5), torch.randn(2, 4, 5)
    for name in SCORE_NAMES:
        s = make_score(name, 5)
        assert s.name == name and s(qq, kk).shape == (2, 3, 4)
    assert make_score("additive", 5).num_hiddens == 5  # h = Dh
    assert make_score("bilinear", 5).M.shape == (5, 5)
    inst = Dot()
    assert make_score(inst, 5) is inst
    with pytest.raises(ValueError, match=r"score='bilinear' carries learned parameters"):
        make_score("bilinear")
    with pytest.raises(ValueError, match=r"size must be a positive int; got 0"):
        make_score("additive", 0)


def test_resolve_score_is_a_deprecated_name_of_make_score():
    with pytest.warns(DeprecationWarning, match=r"^attnkit.scores.resolve_score is deprecated: "
                                                r"it is now called attnkit.scores.make_score$"):
        from attnkit.scores import resolve_score

        assert isinstance(resolve_score("dot"), Dot)
