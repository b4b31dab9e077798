"""The cases every backend is checked on, their inputs, one run of a backend and the
float64 oracle: shared by the suite for every backend and the tests of each one."""

from __future__ import annotations

import copy
import functools

import torch

import attnkit
from attnkit.scores import Additive, Bilinear, Distance, Dot, ScaledDot
from tests.backends._seeds import case_seed

#: Error floors per dtype (absolute, on O(1) outputs): a few units in the last place.
FLOOR = {torch.float32: 2e-6, torch.bfloat16: 4e-3, torch.float16: 5e-4}


def make_score(name: str, dq: int, dk: int):
    torch.manual_seed(1)
    return {
        "dot": lambda: Dot(),
        "scaled_dot": lambda: ScaledDot(),
        "distance": lambda: Distance(1.7),
        "bilinear": lambda: Bilinear(dq, dk, scaled=True),
        "additive": lambda: Additive(6, dq, dk),
    }[name]()


# name -> (B, H | None, Nq, Nk, Dq, Dv, extra kwargs builder)
CASES = {
    "plain": (3, 2, 7, 11, {}),
    "valid_lens_1d_with_empty": (3, 2, 7, 11, {"valid_lens": [0, 4, 11]}),
    "valid_lens_2d": (3, 2, 7, 11, {"valid_lens": "2d"}),
    "causal_top_left": (3, 2, 7, 11, {"causal": "top_left", "valid_lens": [5, 1, 11]}),
    "causal_bottom_right": (3, 2, 7, 11, {"causal": "bottom_right"}),
    "causal_bottom_right_nq_gt_nk": (3, 2, 13, 5, {"causal": "bottom_right",
                                                   "valid_lens": [5, 2, 0]}),
    "causal_2d": (3, 2, 11, 11, {"causal": True, "valid_lens": "2d"}),
    "mask_with_empty_row": (3, 2, 7, 11, {"mask": "random"}),
    "query_padding": (3, 2, 7, 11, {"valid_lens": [3, 11, 6], "query_valid_lens": [2, 7, 0]}),
    "no_heads": (3, None, 7, 13, {"valid_lens": [13, 1, 8]}),
    "one_query": (3, 2, 1, 11, {"causal": "bottom_right", "valid_lens": [2, 11, 5]}),
    # a decoding step: one query per sequence (sdpa's single-call path)
    "one_query_all_keys": (3, 2, 1, 11, {"causal": "bottom_right"}),
    "one_query_with_empty": (3, 2, 1, 11, {"valid_lens": [0, 11, 5]}),
    "one_query_padded": (3, 2, 1, 11, {"valid_lens": [4, 11, 5], "query_valid_lens": [1, 0, 1]}),
    "one_query_no_heads": (4, None, 1, 9, {"valid_lens": [9, 1, 3, 9]}),
}


def make_inputs(case: str, dtype, score_name: str, requires_grad=True):
    B, H, Nq, Nk, kw = CASES[case]
    dq = 5
    dk = 7 if score_name in ("bilinear", "additive") else dq
    lead = (B,) if H is None else (B, H)
    g = torch.Generator().manual_seed(case_seed(case))
    q = torch.randn(*lead, Nq, dq, generator=g)
    k = torch.randn(*lead, Nk, dk, generator=g)
    v = torch.randn(*lead, Nk, 3, generator=g)
    kw = dict(kw)
    if kw.get("valid_lens") == "2d":
        kw["valid_lens"] = torch.randint(0, Nk + 1, (B, Nq), generator=g)
        kw["valid_lens"][0, 1] = 0  # an empty row
    elif "valid_lens" in kw:
        kw["valid_lens"] = torch.tensor(kw["valid_lens"])
    if "query_valid_lens" in kw:
        kw["query_valid_lens"] = torch.tensor(kw["query_valid_lens"])
    if kw.get("mask") == "random":
        mask = torch.rand(B, 1, Nq, Nk, generator=g) > 0.4
        mask[1, 0, 2] = False  # a fully masked row
        kw["mask"] = mask
    tensors = [t.to(dtype).requires_grad_(requires_grad) for t in (q, k, v)]
    return tensors, kw


def run(backend, tensors, kw, score, weights=None):
    """Output and gradients (q, k, v, score params) of ``sum(out * weights)``."""
    q, k, v = tensors
    out = attnkit.attention(q, k, v, score=score, backend=backend, **kw)
    if weights is None:
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(7))
    params = [p for p in score.parameters()]
    grads = torch.autograd.grad((out * weights.to(out.dtype)).sum(), [q, k, v, *params])
    return out, grads, weights


@functools.cache
def oracle_and_reference(case, dtype, score_name):
    """(float64 truth, reference in ``dtype``, inputs, kwargs, score in ``dtype``); cached."""
    score = make_score(score_name, 5, 7 if score_name in ("bilinear", "additive") else 5)
    tensors, kw = make_inputs(case, dtype, score_name)
    score_lp = copy.deepcopy(score).to(dtype)
    score64 = copy.deepcopy(score_lp).double()
    tensors64 = [t.detach().double().requires_grad_() for t in tensors]
    ref = run("reference", tensors, kw, score_lp)
    truth = run("reference", tensors64, kw, score64, weights=ref[2])
    return truth, ref, tensors, kw, score_lp
