"""The lean decoding step: the logits of ``decode_step`` through the modules, with fewer ops.

Sizes are distinct per axis: B=3, S=11, T=7, d=12 (H=3), d_ff=13, V_src=29, V_tgt=23.
"""

import pytest
import torch

from attnkit.models import Transformer
from attnkit.models.incremental import Lean, lean_reason, lean_verdict

B, S, T, VS, VT = 3, 11, 7, 29, 23


def _model(**kw):
    torch.manual_seed(0)
    args = dict(num_hiddens=12, num_heads=3, ffn_num_hiddens=13, num_encoder_layers=2,
                num_decoder_layers=2, dropout=0.1, max_len=64)
    args.update(kw)
    return Transformer(VS, VT, **args).double().eval()


def _batch():
    g = torch.Generator().manual_seed(1)
    src = torch.randint(1, VS, (B, S), generator=g)
    tgt = torch.randint(1, VT, (B, T), generator=g)
    return src, tgt, torch.tensor([S, 6, 1])


def _decode(model, src, tgt, vl, *, lean: bool, picks=()):
    """Step logits, one token at a time, with row selections (beams) between steps."""
    state = model.init_state(model.encode(src, vl), vl)
    if not lean:
        state.lean = Lean.OFF  # the modules' path
    rows, out = torch.arange(B), []
    for t in range(T):
        if t in dict(picks):
            pick = dict(picks)[t]
            state, rows = model.reorder_state(state, pick), rows[pick]
        logits, state = model.decode_step(tgt[rows, t:t + 1], state)
        out.append(logits)
    return out, state


@pytest.mark.parametrize("kw", [{}, {"pre_norm": True}, {"positional": "learned"},
                                {"bias": False, "activation": "gelu"},
                                {"tie_output": True}])
@torch.no_grad()
def test_lean_steps_give_the_modules_logits(kw):
    model = _model(**kw)
    src, tgt, vl = _batch()
    # beams: rows duplicated, then a sentence leaves the batch (as beam search does)
    picks = ((2, torch.tensor([0, 0, 1, 2, 2])), (4, torch.tensor([1, 3, 4])))
    lean, s_lean = _decode(model, src, tgt, vl, lean=True, picks=picks)
    mods, s_mods = _decode(model, src, tgt, vl, lean=False, picks=picks)
    assert s_lean.lean is Lean.ON and s_lean.lean_weights  # it ran, with its fused weights
    assert s_mods.lean is Lean.OFF and not s_mods.lean_weights
    for a, b in zip(lean, mods):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    for (c1, x1), (c2, _) in zip(s_lean.caches, s_mods.caches):
        torch.testing.assert_close(c1.keys, c2.keys, rtol=0, atol=0)
        assert len(c1) == T and len(x1) == S


@torch.no_grad()
def test_the_full_pass_agrees_too():
    model = _model()
    src, tgt, vl = _batch()
    steps, _ = _decode(model, src, tgt, vl, lean=True)
    torch.testing.assert_close(torch.cat(steps, 1), model(src, tgt, vl), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("kw", "reason"), [
    ({"score": "additive"}, "score 'additive'"),
    ({"num_heads": 6, "num_kv_heads": 3}, "grouped-query heads"),
    ({"positional": "rope"}, "rotary positions"),
    ({"positional": "alibi"}, "score"),
    ({"backend": "reference"}, "backend 'reference'"),
])
@torch.no_grad()
def test_what_the_lean_step_refuses_runs_through_the_modules(kw, reason):
    model = _model(**kw)
    src, tgt, vl = _batch()
    state = model.init_state(model.encode(src, vl), vl)
    assert lean_verdict(model, state) == (Lean.UNDECIDED,
                                          "the first step (encoder keys not cached yet)")
    model.decode_step(tgt[:, :1], state)
    assert state.lean is Lean.UNDECIDED  # decided at the next step, with the keys cached
    assert reason in lean_reason(model, state)
    model.decode_step(tgt[:, 1:2], state)
    assert state.lean is Lean.OFF


@torch.no_grad()
def test_training_mode_kept_weights_and_empty_sources_are_refused():
    model = _model()
    src, tgt, vl = _batch()
    state = model.init_state(model.encode(src, vl), vl)
    model.decode_step(tgt[:, :1], state)
    assert lean_reason(model, state) is None
    model.decoder.blocks[1].cross_attention.keep_weights = True
    assert "kept" in lean_reason(model, state)
    model.decoder.blocks[1].cross_attention.keep_weights = False
    state.src_valid_lens = torch.tensor([3, 0, 1])
    assert "length 0" in lean_reason(model, state)
    model.train()
    assert "training" in lean_reason(model, state)
    with torch.enable_grad():
        model.eval()
        assert "autograd" in lean_reason(model, state)
