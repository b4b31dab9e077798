"""The book's algorithms, restated independently, as oracles for the tests.

d2l's masked softmax fills masked scores with -1e6 and takes a plain
softmax; rows with no valid key therefore come out uniform. attnkit agrees
wherever a row has a valid key and gives zeros elsewhere.
"""

import math

import torch


def book_masked_softmax(X, valid_lens):
    if valid_lens is None:
        return torch.softmax(X, dim=-1)
    shape = X.shape
    if valid_lens.dim() == 1:
        lens = torch.repeat_interleave(valid_lens, shape[1])
    else:
        lens = valid_lens.reshape(-1)
    flat = X.reshape(-1, shape[-1])
    keep = torch.arange(shape[-1], dtype=torch.float32)[None, :] < lens[:, None]
    flat = torch.where(keep, flat, torch.full_like(flat, -1e6))
    return torch.softmax(flat.reshape(shape), dim=-1)


def dense_reference(queries, keys, values, score_fn, mask=None):
    """float64, materialized: softmax over allowed keys, zero rows where none."""
    q, k, v = queries.double(), keys.double(), values.double()
    s = score_fn(q, k)
    if mask is not None:
        s = s.masked_fill(~mask, -math.inf)
        empty = ~mask.any(-1, keepdim=True)
        s = s.masked_fill(empty, 0.0)
    w = torch.softmax(s, -1)
    if mask is not None:
        w = w.masked_fill(empty, 0.0)
    return w @ v, w


# ---------------------------------------------------------------------------
# The chapter's modules (d2l §11.3–11.7), restated as functions of explicit
# parameters: ``p`` is a module's ``state_dict()`` (the book's parameter names),
# so a test can run the attnkit.d2l module and this restatement on the same
# weights. Everything follows the book's order of operations, in eval mode
# (no dropout).


def _linear(x, p, name):
    out = x @ p[f"{name}.weight"].T
    bias = p.get(f"{name}.bias")
    return out if bias is None else out + bias


def book_dot_attention(queries, keys, values, valid_lens):
    """§11.3.3: scores QKᵀ/√d, the -1e6 masked softmax, then a batch matmul."""
    d = queries.shape[-1]
    scores = torch.bmm(queries, keys.transpose(1, 2)) / math.sqrt(d)
    weights = book_masked_softmax(scores, valid_lens)
    return torch.bmm(weights, values), weights


def book_additive_attention(p, queries, keys, values, valid_lens, prefix=""):
    """§11.3.4: w_vᵀ tanh(W_q q + W_k k) over every (query, key) pair."""
    q = _linear(queries, p, prefix + "W_q")
    k = _linear(keys, p, prefix + "W_k")
    features = torch.tanh(q.unsqueeze(2) + k.unsqueeze(1))  # (B, Nq, Nk, h)
    scores = _linear(features, p, prefix + "w_v").squeeze(-1)
    weights = book_masked_softmax(scores, valid_lens)
    return torch.bmm(weights, values), weights


def book_multihead(p, queries, keys, values, valid_lens, num_heads, prefix=""):
    """§11.5: project, split heads into the batch, attend, merge, project."""

    def split(X):  # (B, N, d) -> (B*H, N, d/H), row b*H + h
        B, N, _ = X.shape
        return X.reshape(B, N, num_heads, -1).transpose(1, 2).reshape(B * num_heads, N, -1)

    q = split(_linear(queries, p, prefix + "W_q"))
    k = split(_linear(keys, p, prefix + "W_k"))
    v = split(_linear(values, p, prefix + "W_v"))
    if valid_lens is not None:
        valid_lens = torch.repeat_interleave(valid_lens, num_heads, dim=0)
    out, weights = book_dot_attention(q, k, v, valid_lens)
    BH, N, Dh = out.shape
    merged = out.reshape(BH // num_heads, num_heads, N, Dh).transpose(1, 2).reshape(
        BH // num_heads, N, num_heads * Dh)
    return _linear(merged, p, prefix + "W_o"), weights


def book_positional_table(max_len, num_hiddens, dtype=torch.float32):
    """§11.6.3: P[i, 2j] = sin(i / 10000^(2j/d)), P[i, 2j+1] = cos(...)."""
    P = torch.zeros((1, max_len, num_hiddens), dtype=dtype)
    X = torch.arange(max_len, dtype=dtype).reshape(-1, 1) / torch.pow(
        10000, torch.arange(0, num_hiddens, 2, dtype=dtype) / num_hiddens)
    P[:, :, 0::2] = torch.sin(X)
    P[:, :, 1::2] = torch.cos(X)
    return P


def book_ffn(p, X, prefix=""):
    """§11.7.2: dense2(relu(dense1(X)))."""
    return _linear(torch.relu(_linear(X, p, prefix + "dense1")), p, prefix + "dense2")


def book_addnorm(p, X, Y, prefix=""):
    """§11.7.3: LayerNorm(Y + X) (dropout off)."""
    return torch.nn.functional.layer_norm(Y + X, X.shape[-1:], p[prefix + "ln.weight"],
                                          p[prefix + "ln.bias"], eps=1e-5)


def book_encoder_block(p, X, valid_lens, num_heads, prefix=""):
    """§11.7.4: AddNorm(X, MHA(X, X, X)), then AddNorm(Y, FFN(Y))."""
    att, w = book_multihead(p, X, X, X, valid_lens, num_heads, prefix + "attention.")
    Y = book_addnorm(p, X, att, prefix + "addnorm1.")
    return book_addnorm(p, Y, book_ffn(p, Y, prefix + "ffn."), prefix + "addnorm2."), w


def _embed(p, tokens, P):
    """Embedding·√d + P[:, :N]; ``P`` defaults to the book's float32 table (a test
    comparing the composition passes the module's table, which is compared separately)."""
    d = p["embedding.weight"].shape[1]
    X = p["embedding.weight"][tokens] * math.sqrt(d)
    P = book_positional_table(1000, d) if P is None else P
    return X + P[:, :X.shape[1]]


def book_encoder(p, tokens, valid_lens, num_heads, num_blks, P=None):
    """§11.7.4: embedding·√d + P, then the blocks; returns (X, weights per block)."""
    X = _embed(p, tokens, P)
    weights = []
    for i in range(num_blks):
        X, w = book_encoder_block(p, X, valid_lens, num_heads, f"blks.block{i}.")
        weights.append(w)
    return X, weights


def book_decoder_block(p, X, state, i, num_heads, training, prefix=""):
    """§11.7.5: causal self-attention over the cache, cross-attention, FFN."""
    enc_outputs, enc_valid_lens, cache = state
    kv = X if cache[i] is None else torch.cat((cache[i], X), dim=1)
    cache[i] = kv
    dec_valid_lens = None
    if training:
        B, T, _ = X.shape
        dec_valid_lens = torch.arange(1, T + 1).repeat(B, 1)
    X2, w1 = book_multihead(p, X, kv, kv, dec_valid_lens, num_heads, prefix + "attention1.")
    Y = book_addnorm(p, X, X2, prefix + "addnorm1.")
    Y2, w2 = book_multihead(p, Y, enc_outputs, enc_outputs, enc_valid_lens, num_heads,
                            prefix + "attention2.")
    Z = book_addnorm(p, Y, Y2, prefix + "addnorm2.")
    return book_addnorm(p, Z, book_ffn(p, Z, prefix + "ffn."), prefix + "addnorm3."), (w1, w2)


def book_decoder(p, tokens, state, num_heads, num_blks, training=False, P=None):
    """§11.7.5: embedding·√d + P[:T] (positions from 0 on every call), blocks, dense."""
    X = _embed(p, tokens, P)
    weights = [[], []]
    for i in range(num_blks):
        X, (w1, w2) = book_decoder_block(p, X, state, i, num_heads, training,
                                         f"blks.block{i}.")
        weights[0].append(w1)
        weights[1].append(w2)
    return _linear(X, p, "dense"), state, weights


def book_bahdanau_decoder(p, tokens, state, num_layers):
    """§11.4.2: one step at a time, query = top hidden state, context ++ embedding → GRU."""
    enc_outputs, hidden, enc_valid_lens = state
    E = p["embedding.weight"].shape[1]
    d = hidden.shape[-1]
    gru = torch.nn.GRU(E + d, d, num_layers).to(enc_outputs.dtype)  # time-major, as the book
    weights_of_gru = {k[4:]: v for k, v in p.items() if k.startswith("rnn.")}
    outputs, weights = [], []
    for x in p["embedding.weight"][tokens].permute(1, 0, 2):  # (B, E) per step
        query = hidden[-1].unsqueeze(1)  # (B, 1, d)
        context, w = book_additive_attention(p, query, enc_outputs, enc_outputs,
                                             enc_valid_lens, "attention.score.")
        x = torch.cat((context, x.unsqueeze(1)), dim=-1)  # (B, 1, d + E)
        out, hidden = torch.func.functional_call(gru, weights_of_gru,
                                                 (x.permute(1, 0, 2), hidden))
        outputs.append(out)
        weights.append(w)
    logits = _linear(torch.cat(outputs, dim=0), p, "dense").permute(1, 0, 2)
    return logits, [enc_outputs, hidden, enc_valid_lens], weights
