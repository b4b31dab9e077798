"""Bahdanau seq2seq: step decoding, padding invariance, causality, and a hand-built first step.

Sizes are distinct per axis: B=3, S=11, T=7, E=5, h=13, L=2, V_src=29, V_tgt=23.
"""

import pytest
import torch

from attnkit.models import BahdanauSeq2Seq, Seq2SeqEncoder

B, S, T, E, HID, L, VS, VT = 3, 11, 7, 5, 13, 2, 29, 23
TIGHT = dict(rtol=1e-10, atol=1e-10)


def _model(dropout=0.0):
    torch.manual_seed(0)
    return BahdanauSeq2Seq(VS, VT, embed_size=E, num_hiddens=HID, num_encoder_layers=L,
                           num_decoder_layers=L, dropout=dropout).double()


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(1, VS, (B, S), generator=g), torch.randint(1, VT, (B, T), generator=g),
            torch.tensor([S, 4, 1]))


def test_encoder_state_is_taken_after_the_last_valid_token():
    model = _model().eval()
    src, _, vl = _batch()
    outputs, state = model.encode(src, vl)
    assert outputs.shape == (B, S, HID) and state.shape == (L, B, HID)
    for b, n in enumerate(vl.tolist()):
        # the same GRU run on the valid prefix alone
        alone, alone_state = model.encoder.rnn(model.encoder.embedding(src[b:b + 1, :n]))
        torch.testing.assert_close(outputs[b, :n], alone[0], **TIGHT)
        torch.testing.assert_close(state[:, b], alone_state[:, 0], **TIGHT)
        assert torch.all(outputs[b, n:] == 0)


def test_first_decoder_step_by_hand():
    """Step 1 of d2l §11.4: context = additive attention of s_0 over the valid encoder states."""
    model = _model().eval()
    src, tgt, vl = _batch()
    enc_outputs, enc_state = model.encode(src, vl)
    att = model.decoder.attention
    logits = model(src, tgt[:, :1], vl)  # (B, 1, V)
    for b, n in enumerate(vl.tolist()):
        s0 = enc_state[-1, b]  # (h,) top-layer state = the query
        keys = enc_outputs[b, :n]  # (n, h)
        scores = torch.tanh(att.W_q(s0) + att.W_k(keys)) @ att.w_v.weight[0]  # (n,)
        context = torch.softmax(scores, 0) @ keys  # (h,)
        x = torch.cat((context, model.decoder.embedding(tgt[b, 0])))[None, None]  # (1, 1, h+E)
        out, _ = model.decoder.rnn(x, enc_state[:, b:b + 1].contiguous())
        torch.testing.assert_close(logits[b, 0], model.decoder.dense(out[0, 0]), **TIGHT)


def stepwise(model, src, tgt, vl):
    """The logits of decoding ``tgt`` one token at a time: encode, init_state, decode_step."""
    state = model.init_state(model.encode(src, vl), vl)
    steps = []
    for t in range(tgt.shape[1]):
        logits, state = model.decode_step(tgt[:, t:t + 1], state)
        steps.append(logits)
    return torch.cat(steps, 1)


def test_step_decoding_equals_full_forward():
    model = _model().eval()
    src, tgt, vl = _batch()
    full = model(src, tgt, vl)
    torch.testing.assert_close(stepwise(model, src, tgt, vl), full, **TIGHT)
    # reorder_state selects rows, e.g. surviving beams
    state = model.init_state(model.encode(src, vl), vl)
    _, state = model.decode_step(tgt[:, :3], state)
    pick = torch.tensor([1, 1, 2, 0])
    logits, _ = model.decode_step(tgt[pick, 3:4], model.reorder_state(state, pick))
    torch.testing.assert_close(logits[:, 0], full[pick, 3], **TIGHT)


def test_only_valid_logits_are_the_valid_rows():
    model = _model().eval()
    src, tgt, vl = _batch()
    tgt_vl = torch.tensor([T, 2, 5])
    dense = model(src, tgt, vl, tgt_vl)  # (B, T, V)
    packed = model(src, tgt, vl, tgt_vl, only_valid=True)  # (n_valid, V)
    assert packed.shape == (T + 2 + 5, VT)
    torch.testing.assert_close(packed, dense[torch.arange(T) < tgt_vl[:, None]], rtol=0, atol=0)


def test_padding_invariance():
    model = _model().eval()
    src, tgt, vl = _batch()
    logits = model(src, tgt, vl)
    repadded = src.clone()
    for b, n in enumerate(vl.tolist()):
        repadded[b, n:] = (repadded[b, n:] + 7) % VS
    torch.testing.assert_close(model(repadded, tgt, vl), logits, rtol=0, atol=0)


def test_no_leak_from_the_future():
    model = _model().eval()
    src, tgt, vl = _batch()
    logits = model(src, tgt, vl)
    changed = tgt.clone()
    changed[:, 4:] = (changed[:, 4:] + 3) % VT
    other = model(src, changed, vl)
    torch.testing.assert_close(other[:, :4], logits[:, :4], rtol=0, atol=0)
    assert not torch.allclose(other[:, 4], logits[:, 4])


def test_gradients_reach_every_parameter():
    model = _model(dropout=0.1).float().train()
    src, tgt, vl = _batch()
    model(src, tgt, vl).logsumexp(-1).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_bf16_forward_has_no_nan():
    model = _model().eval().to(torch.bfloat16)
    src, tgt, _ = _batch()
    logits = model(src, tgt, torch.tensor([S, 0, 1]))  # an empty source reads as length 1
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()


def test_validation_messages():
    with pytest.raises(ValueError, match="num_layers must be a positive int; got 0"):
        Seq2SeqEncoder(VS, E, HID, 0)
    model = _model()
    src, tgt, vl = _batch()
    with pytest.raises(ValueError, match=r"tgt ids must lie in \[0, 23\)"):
        model(src, torch.full_like(tgt, VT), vl)
    with pytest.raises(ValueError, match="dropout must be a number in"):
        BahdanauSeq2Seq(VS, VT, dropout=1.0)
