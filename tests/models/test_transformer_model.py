"""The Transformer seq2seq model: causality, padding invariance, KV-cache decoding, ties.

Sizes are distinct per axis: B=3, S=11, T=7, d=12 (H=4 or 3), d_ff=13, V_src=29, V_tgt=23.
"""

import pytest
import torch

from attnkit.models import Transformer

B, S, T, VS, VT = 3, 11, 7, 29, 23
TIGHT = dict(rtol=1e-10, atol=1e-10)
POSITIONAL = ["sinusoidal", "learned", "rope", "alibi"]


def _model(positional="sinusoidal", **kw):
    torch.manual_seed(0)
    args = dict(num_hiddens=12, num_heads=3, ffn_num_hiddens=13, num_encoder_layers=2,
                num_decoder_layers=2, dropout=0.0, max_len=64, positional=positional)
    args.update(kw)
    return Transformer(VS, VT, **args).double().eval()


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(1, VS, (B, S), generator=g)
    tgt = torch.randint(1, VT, (B, T), generator=g)
    return src, tgt, torch.tensor([S, 6, 1])


@pytest.mark.parametrize("positional", POSITIONAL)
def test_no_leak_from_the_future(positional):
    model = _model(positional)
    src, tgt, vl = _batch()
    logits = model(src, tgt, vl)
    assert logits.shape == (B, T, VT)
    for t in (3, T - 1):
        changed = tgt.clone()
        changed[:, t:] = (changed[:, t:] + 5) % VT
        other = model(src, changed, vl)
        torch.testing.assert_close(other[:, :t], logits[:, :t], rtol=0, atol=0)
        assert not torch.allclose(other[:, t], logits[:, t])  # the change is visible at t


@pytest.mark.parametrize("positional", POSITIONAL)
def test_padding_invariance(positional):
    model = _model(positional)
    src, tgt, vl = _batch()
    logits = model(src, tgt, vl)
    enc = model.encode(src, vl)
    repadded = src.clone()
    for b, n in enumerate(vl.tolist()):
        repadded[b, n:] = torch.randint(0, VS, (S - n,))
    torch.testing.assert_close(model(repadded, tgt, vl), logits, rtol=0, atol=0)
    enc2 = model.encode(repadded, vl)
    for b, n in enumerate(vl.tolist()):
        torch.testing.assert_close(enc2[b, :n], enc[b, :n], rtol=0, atol=0)


def test_target_padding_only_changes_padded_positions():
    model = _model()
    src, tgt, vl = _batch()
    tgt_vl = torch.tensor([T, 3, 5])
    full = model(src, tgt, vl)
    padded = model(src, tgt, vl, tgt_vl)
    for b, n in enumerate(tgt_vl.tolist()):
        torch.testing.assert_close(padded[b, :n], full[b, :n], **TIGHT)


def test_only_valid_logits_are_the_valid_rows_in_row_major_order():
    model = _model()
    src, tgt, vl = _batch()
    tgt_vl = torch.tensor([T, 3, 5])
    dense = model(src, tgt, vl, tgt_vl)  # (B, T, V)
    packed = model(src, tgt, vl, tgt_vl, only_valid=True)  # (n_valid, V)
    keep = torch.arange(T) < tgt_vl[:, None]
    assert packed.shape == (int(tgt_vl.sum()), VT)
    torch.testing.assert_close(packed, dense[keep], rtol=0, atol=0)
    assert torch.equal(packed[T], dense[1, 0]) and torch.equal(packed[T + 3], dense[2, 0])
    # without target lengths every position is valid
    torch.testing.assert_close(model(src, tgt, vl, only_valid=True),
                               model(src, tgt, vl).reshape(B * T, VT), rtol=0, atol=0)


@pytest.mark.parametrize("kw", [
    dict(positional="sinusoidal"), dict(positional="learned"), dict(positional="rope"),
    dict(positional="alibi"), dict(num_heads=6, num_kv_heads=3, positional="rope"),
    dict(num_heads=6, num_kv_heads=2, positional="alibi"),
    dict(num_heads=6, num_kv_heads=1, pre_norm=True),
    dict(share_embeddings=True, tie_output=True),
], ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_kv_cache_decoding_equals_full_forward(kw):
    vt = VS if kw.get("share_embeddings") else VT
    torch.manual_seed(0)
    args = dict(num_hiddens=12, num_heads=3, ffn_num_hiddens=13, num_encoder_layers=2,
                num_decoder_layers=2, dropout=0.0, max_len=64)
    model = Transformer(VS, vt, **{**args, **kw}).double().eval()
    src, tgt, vl = _batch()
    tgt = tgt % vt
    full = model(src, tgt, vl)
    state = model.init_state(model.encode(src, vl), vl)
    steps = [model.decode_step(tgt[:, :2], state)[0]]  # a 2-token prefix, then one at a time
    for t in range(2, T):
        logits, state = model.decode_step(tgt[:, t:t + 1], state)
        steps.append(logits)
    assert state.position == T
    assert all(len(self_c) == T and len(cross_c) == S for self_c, cross_c in state.caches)
    torch.testing.assert_close(torch.cat(steps, 1), full, **TIGHT)


def test_reorder_state_follows_the_selected_rows():
    model = _model(num_heads=6, num_kv_heads=3)
    src, tgt, vl = _batch()
    full = model(src, tgt, vl)
    state = model.init_state(model.encode(src, vl), vl)
    model.decode_step(tgt[:, :3], state)
    pick = torch.tensor([2, 2, 0, 1])  # e.g. beams: rows duplicated and reordered
    state = model.reorder_state(state, pick)
    logits, _ = model.decode_step(tgt[pick, 3:4], state)
    torch.testing.assert_close(logits[:, 0], full[pick, 3], **TIGHT)


_SCORES = ["scaled_dot", "dot", "bilinear", "additive", "distance"]
_STEP_CASES = [dict(pre_norm=pre, positional=pos, num_kv_heads=kv, score=score)
               for pre in (False, True) for pos in POSITIONAL for kv in (None, 2)
               for score in _SCORES if pos != "alibi" or score == "scaled_dot"]


def _step_logits(model, src, tgt, vl, picks):
    """One-token steps over ``tgt`` with the rows reselected before steps ``picks`` (beams);
    each step's logits and the rows (sentences) they belong to."""
    state = model.init_state(model.encode(src, vl), vl)
    rows, out = torch.arange(src.shape[0]), []
    for t in range(tgt.shape[1]):
        if t in picks:
            state, rows = model.reorder_state(state, picks[t]), rows[picks[t]]
        logits, state = model.decode_step(tgt[rows, t:t + 1], state)
        out.append((rows, logits[:, 0]))
    return out


@pytest.mark.parametrize("kw", _STEP_CASES, ids=lambda kw: "-".join(
    f"{k}={v}" for k, v in kw.items()))
@torch.no_grad()
def test_one_token_steps_equal_the_full_forward_for_every_configuration(kw, monkeypatch):
    """Post/pre-LN × positional kinds × grouped-query heads or not × scores: the steps
    (sources of different lengths, one empty; beams reselected midway) give the full
    forward's logits, and no block's batch path runs for them (the one step does)."""
    from attnkit.nn import TransformerDecoderBlock

    model = _model(num_hiddens=16, num_heads=4, **kw)
    src, tgt, _ = _batch()
    vl = torch.tensor([S, 6, 0])
    full = model(src, tgt, vl)  # (B, T, V)

    def refuse(*args, **kwargs):
        raise AssertionError("a one-token step ran TransformerDecoderBlock.forward_rows")

    monkeypatch.setattr(TransformerDecoderBlock, "forward_rows", refuse)
    for picks in (_PICKS_UNEVEN, _PICKS_BEAMS):
        for t, (rows, logits) in enumerate(_step_logits(model, src, tgt, vl, picks)):
            torch.testing.assert_close(logits, full[rows, t], **TIGHT)


#: rows reselected as no beam search would: a row per sequence on the encoder side
_PICKS_UNEVEN = {2: torch.tensor([0, 0, 1, 2, 2]), 4: torch.tensor([1, 3, 4])}
#: as a beam of 2 does: each sentence twice, beams swapped within their sentences, then
#: the second sentence leaves, then one beam alone (the encoder side per source, shared
#: by the source's rows, then per row again)
_PICKS_BEAMS = {1: torch.tensor([0, 0, 1, 1, 2, 2]), 3: torch.tensor([1, 0, 3, 2, 5, 4]),
                5: torch.tensor([0, 1, 4, 5]), 6: torch.tensor([3, 0])}


@pytest.mark.parametrize("kw", [dict(), dict(num_kv_heads=2), dict(score="additive"),
                                dict(num_kv_heads=1, score="distance", pre_norm=True)],
                         ids=["plain", "gqa", "additive", "mqa-distance"])
@torch.no_grad()
def test_the_beams_of_a_source_share_its_encoder_side_with_the_same_logits(kw):
    """Rows reselected as beams (``G`` per source, in order) keep one encoder-side row per
    source and attend it with their ``G`` queries together: the logits and the kept
    cross-attention weights are those of the rows each with a copy of their source."""
    model = _model(num_hiddens=16, num_heads=4, **kw)
    src, tgt, _ = _batch()
    vl = torch.tensor([S, 6, 0])
    for blk in model.decoder.blocks:
        blk.cross_attention.keep_weights = True
    shared = model.init_state(model.encode(src, vl), vl)
    own = model.init_state(model.encode(src, vl), vl)
    beams = torch.tensor([0, 0, 1, 1, 2, 2])
    model.reorder_state(shared, beams)
    model.reorder_state(own, beams).rows_own_sources()
    assert (shared.rows_per_source, shared.enc_outputs.shape[0]) == (2, 3)
    assert (own.rows_per_source, own.enc_outputs.shape[0]) == (1, 6)
    for t in range(3):
        a, _ = model.decode_step(tgt[beams, t:t + 1], shared)
        weights = [blk.cross_attention.attention_weights for blk in model.decoder.blocks]
        b, _ = model.decode_step(tgt[beams, t:t + 1], own)
        torch.testing.assert_close(a, b, **TIGHT)
        for w, blk in zip(weights, model.decoder.blocks, strict=True):
            assert w.shape == (6, 4, 1, S)
            torch.testing.assert_close(w, blk.cross_attention.attention_weights, **TIGHT)


@pytest.mark.parametrize("kw", [
    dict(), dict(num_kv_heads=2, positional="rope"), dict(num_kv_heads=1, pre_norm=True),
    dict(score="bilinear", num_kv_heads=2), dict(score="dot", positional="learned")],
    ids=["plain", "rope-gqa", "mqa-pre_norm", "bilinear-gqa", "dot"])
@torch.no_grad()
def test_float32_steps_by_the_compiled_kernel_are_as_accurate_as_by_sdpa(kw, monkeypatch):
    """In float32 on the CPU the steps' attention is the compiled kernel's
    (:mod:`attnkit.kernels.cpu_step`, its calls counted; the self-attention's keys of
    reselected rows read through the cache's table, not copied): over sources of
    different lengths (one empty) and reselected rows (uneven, and beams sharing their
    source), its logits are within 2x the SDPA path's error of the float64 model's, plus
    1e-6."""
    import copy

    from attnkit.kernels import cpu_step
    from tests.kernels._reference import max_err, within_bound

    if cpu_step.status().lib is None:
        pytest.skip(f"no compiled kernel: {cpu_step.status().detail}")
    model64 = _model(num_hiddens=16, num_heads=4, **kw)
    model32 = copy.deepcopy(model64).float()
    src, tgt, _ = _batch()
    vl = torch.tensor([S, 6, 0])
    calls, kernel = [], cpu_step.step_attention
    monkeypatch.setattr(cpu_step, "step_attention", lambda *a, **k: calls.append(
        k.get("key_rows") is not None) or kernel(*a, **k))
    for picks in (_PICKS_UNEVEN, _PICKS_BEAMS):
        truth = _step_logits(model64, src, tgt, vl, picks)
        by_kernel = _step_logits(model32, src, tgt, vl, picks)
        assert calls
        with monkeypatch.context() as m:
            m.setattr(cpu_step, "usable", lambda *a: False)
            n = len(calls)
            by_sdpa = _step_logits(model32, src, tgt, vl, picks)
            assert len(calls) == n
        for (rows, want), (rows32, got), (_, base) in zip(truth, by_kernel, by_sdpa,
                                                         strict=True):
            assert torch.equal(rows, rows32)
            within_bound("logits", max_err(got, want), max_err(base, want), factor=2,
                         floor=1e-6)
    assert any(calls)  # the beams' rows read through the cache's table of rows


@torch.no_grad()
def test_the_decoder_step_refuses_rows_per_source_that_do_not_divide_the_batch():
    model = _model(num_hiddens=16, num_heads=4)
    src, tgt, vl = _batch()
    state = model.init_state(model.encode(src, vl), vl)
    with pytest.raises(ValueError, match=r"rows_per_source must divide the batch of tokens, "
                                         r"B = 3; got 2"):
        model.decoder.step(tgt[:, :1], state.caches, state.enc_outputs, rows_per_source=2)
    with pytest.raises(ValueError, match=r"rows_per_source must be a positive int; got 0"):
        model.decoder.step(tgt[:, :1], state.caches, state.enc_outputs, rows_per_source=0)


@pytest.mark.parametrize(("backend", "score"), [
    (backend, score) for backend in ("reference", "chunked", "sdpa")
    for score in ("scaled_dot", "additive", "distance")
    if (backend, score) != ("sdpa", "additive")])  # sdpa refuses additive in the encoder
@torch.no_grad()
def test_one_token_steps_on_every_backend(backend, score):
    """An explicit backend runs the steps' attention (through attnkit.attention, or as
    one SDPA call for sdpa), with the full forward's logits."""
    model = _model(num_hiddens=16, num_heads=4, num_kv_heads=2, score=score,
                   backend=backend)
    src, tgt, vl = _batch()
    full = model(src, tgt, vl)
    for picks in ({}, _PICKS_BEAMS):
        for t, (rows, logits) in enumerate(_step_logits(model, src, tgt, vl, picks)):
            torch.testing.assert_close(logits, full[rows, t], **TIGHT)


@pytest.mark.parametrize(("score", "fused"), [("scaled_dot", True), ("distance", True),
                                              ("bilinear", True), ("additive", False)])
@torch.no_grad()
def test_steps_of_dot_form_scores_skip_the_attention_dispatch(score, fused, monkeypatch):
    """The cheap path: a score with a dot-product form is one SDPA call per step, without
    attnkit.attention's checks and planning; other scores take that general path."""
    import attnkit.nn.multihead as multihead

    model = _model(num_hiddens=16, num_heads=4, score=score)
    src, tgt, vl = _batch()
    state = model.init_state(model.encode(src, vl), vl)
    calls = []
    general = multihead.attention
    monkeypatch.setattr(multihead, "attention", lambda *a, **k: calls.append(1) or general(
        *a, **k))
    model.decode_step(tgt[:, :1], state)
    model.decode_step(tgt[:, 1:2], state)
    assert bool(calls) is not fused


def test_decoding_in_training_mode_keeps_dropout_and_the_decoder_step_refuses_it():
    model = _model(dropout=0.5).train()
    src, tgt, vl = _batch()
    state = model.init_state(model.encode(src, vl), vl)
    torch.manual_seed(3)
    a, _ = model.decode_step(tgt[:, :1], state)  # the modules' forward, with dropout
    with pytest.raises(RuntimeError, match=r"TransformerDecoder.step is for inference.*"
                                           r"call \.eval\(\) first"):
        model.decoder.step(tgt[:, 1:2], state.caches, state.enc_outputs)
    model.eval()
    b, _ = model.decode_step(tgt[:, 1:2], state)
    assert a.shape == b.shape == (B, 1, VT)


def test_shared_and_tied_embeddings():
    model = Transformer(VS, VS, num_hiddens=12, num_heads=3, ffn_num_hiddens=13,
                        num_encoder_layers=1, num_decoder_layers=1,
                        share_embeddings=True, tie_output=True)
    emb = model.encoder.embed.embedding
    assert model.decoder.embed.embedding is emb and model.output.weight is emb.weight
    untied = Transformer(VS, VS, num_hiddens=12, num_heads=3, ffn_num_hiddens=13,
                         num_encoder_layers=1, num_decoder_layers=1)
    n = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in untied.parameters()) - n == 2 * VS * 12


def test_embeddings_are_scaled_by_sqrt_d_model():
    model = _model()
    tokens = torch.tensor([[3, 5]])
    x = model.encoder.embed(tokens)
    expected = model.encoder.embed.embedding.weight[[3, 5]] * 12 ** 0.5
    expected = expected + model.encoder.embed.pos_encoding.P[0, :2]
    torch.testing.assert_close(x[0], expected, **TIGHT)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = Transformer(VS, VT, num_hiddens=12, num_heads=4, ffn_num_hiddens=13,
                        num_encoder_layers=2, num_decoder_layers=2, dropout=0.1,
                        positional="learned").train()
    src, tgt, vl = _batch()
    model(src, tgt, vl, torch.tensor([T, 4, 6])).logsumexp(-1).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_bf16_forward_has_no_nan():
    model = _model().to(torch.bfloat16)
    src, tgt, _ = _batch()
    logits = model(src, tgt, torch.tensor([S, 0, 1]))  # includes an empty source
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()
    ref = _model().float()(src, tgt, torch.tensor([S, 0, 1]))
    torch.testing.assert_close(logits.float(), ref, rtol=0.1, atol=0.15)


def test_validation_messages():
    with pytest.raises(ValueError, match="share_embeddings=True needs src_vocab_size == "
                                         "tgt_vocab_size; got 29 and 23"):
        Transformer(VS, VT, share_embeddings=True)
    with pytest.raises(ValueError, match="positional must be one of"):
        Transformer(VS, VT, num_hiddens=12, num_heads=3, positional="relative")
    model = _model()
    src, tgt, vl = _batch()
    bad = src.clone()
    bad[1, 2] = 40
    with pytest.raises(ValueError, match=r"src ids must lie in \[0, 29\); got min 1, max 40"):
        model(bad, tgt, vl)
    with pytest.raises(ValueError, match=r"tgt ids must lie in \[0, 23\)"):
        model(src, torch.full_like(tgt, VT), vl)
    with pytest.raises(ValueError, match=r"src must be a \(B, N\) int64 tensor"):
        model(src.double(), tgt, vl)
    with pytest.raises(ValueError, match=r"offset \+ N = 60 \+ 7 = 67 exceed max_len=64"):
        state = model.init_state(model.encode(src, vl), vl)
        state.position = 60
        model.decode_step(tgt, state)


@torch.no_grad()
def test_every_step_checks_its_tokens_in_one_line():
    """Bad tokens at a later step (out of the vocabulary, 1-D, another batch size) are
    refused naming the argument, not deep inside torch."""
    model = _model()
    src, tgt, vl = _batch()
    state = model.init_state(model.encode(src, vl), vl)
    for t in range(2):
        model.decode_step(tgt[:, t:t + 1], state)
    with pytest.raises(ValueError, match=r"tgt ids must lie in \[0, 23\); got min 23, max 23"):
        model.decode_step(torch.full((B, 1), VT), state)
    with pytest.raises(ValueError, match=r"tgt must be a \(B, N\) int64 tensor of token ids; "
                                         r"got \(3\) torch.int64"):
        model.decode_step(tgt[:, 2], state)
    with pytest.raises(ValueError, match=r"kv_cache \(KVCache\(\)\) holds keys of B = 3 "
                                         r"sequences; got tokens of B = 2"):
        model.decode_step(tgt[:2, 2:3], state)
    assert state.position == 2  # nothing was decoded by the refused steps


def test_reordering_within_sentences_keeps_the_encoder_side_and_across_moves_it():
    """The encoder side follows the sources: beams of a sentence share one row of it
    (``rows_per_source``), a sentence that leaves takes its row along, and rows in
    another order get a copy each."""
    from attnkit.models.transformer import TransformerState
    from attnkit.nn.multihead import KVCache

    enc = torch.arange(3 * 3 * 4, dtype=torch.float32).view(3, 3, 4)
    cross = KVCache(static=True)
    cross.update(enc.view(3, 1, 3, 4), enc.view(3, 1, 3, 4))
    selfc = KVCache()
    selfc.update(torch.arange(3.0).view(3, 1, 1, 1), torch.arange(3.0).view(3, 1, 1, 1))
    state = TransformerState(enc, torch.tensor([3, 2, 1]), [(selfc, cross)], 1)
    state.reorder(torch.tensor([0, 0, 1, 1, 2, 2]))  # beams: every sentence twice
    assert state.enc_outputs is enc and state.rows_per_source == 2
    state.reorder(torch.tensor([1, 0, 3, 2, 4, 4]))  # within sentences: encoder side kept
    assert state.enc_outputs is enc and state.rows_per_source == 2
    assert torch.equal(selfc.keys.flatten(), torch.tensor([0.0, 0.0, 1.0, 1.0, 2.0, 2.0]))
    state.reorder(torch.tensor([0, 1, 4, 5]))  # the second sentence leaves: its row too
    assert torch.equal(state.enc_outputs, enc[[0, 2]]) and state.rows_per_source == 2
    assert torch.equal(cross.keys[:, 0], enc[[0, 2]])
    assert torch.equal(state.src_valid_lens, torch.tensor([3, 1]))
    assert torch.equal(state.origin, torch.tensor([0, 0, 1, 1]))
    state.reorder(torch.tensor([2, 3, 0, 1]))  # across sentences: a row each
    assert torch.equal(state.enc_outputs, enc[[2, 2, 0, 0]]) and state.rows_per_source == 1
    assert torch.equal(cross.keys[:, 0], enc[[2, 2, 0, 0]])
    assert torch.equal(state.src_valid_lens, torch.tensor([1, 1, 3, 3]))
    assert torch.equal(selfc.keys.flatten(), torch.tensor([2.0, 2.0, 0.0, 0.0]))


@pytest.mark.parametrize("family", ["transformer", "bahdanau"])
@torch.no_grad()
def test_reordering_a_state_checks_the_rows_in_one_line(family):
    """Rows outside the batch, a 2-D selection or floats: one line naming ``indices``,
    not index_select's; the state is left as it was."""
    from attnkit.models import BahdanauSeq2Seq

    model = (_model() if family == "transformer" else
             BahdanauSeq2Seq(VS, VT, embed_size=8, num_hiddens=8, num_encoder_layers=1,
                             num_decoder_layers=1, dropout=0.0).double().eval())
    src, tgt, vl = _batch()
    state = model.init_state(model.encode(src, vl), vl)
    for bad, said in [(torch.tensor([0, 3]), r"indices must lie in \[0, 3\) \(the rows held\); "
                                               r"got min 0, max 3"),
                      (torch.tensor([-1]), r"got min -1, max -1"),
                      (torch.tensor([[0, 1]]), r"indices must be a 1-D int64 tensor of row "
                                               r"indices; got \(1, 2\) torch.int64"),
                      (torch.tensor([0.0]), r"1-D int64 tensor of row indices; got \(1\) "
                                            r"torch.float32")]:
        with pytest.raises(ValueError, match=said):
            model.reorder_state(state, bad)
    logits, _ = model.decode_step(tgt[:, :1], state)  # still the 3 rows it held
    assert logits.shape[0] == B
