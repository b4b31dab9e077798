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
