"""The checkers of plain values (``attnkit._values``): one per kind of value, one message
shape for all, ``{name} must be {expected}; got {given}``; and the places that once
checked such values by hand now say it in that shape."""

import datetime
import math
import re

import pytest
import torch

import attnkit.d2l as d2l
from attnkit import nn
from attnkit._values import (
    WrongKindError,
    check_choice,
    check_divisible,
    check_finite,
    check_int,
    check_nonnegative_int,
    check_positive_int,
    check_probability,
    closest,
    parse_positive_or_auto,
)
from attnkit.backends import explain_backend
from attnkit.backends.chunked import ChunkedBackend
from attnkit.bench._suite import thread_list
from attnkit.cost import attention_cost
from attnkit.data.batching import BatchingConfig, shard_batch
from attnkit.data.corpus import multi30k_files, split_pairs
from attnkit.data.generated import format_date, generate_pairs
from attnkit.data.tokenizer import SentencePieceTokenizer, TokenizerPair, WordTokenizer
from attnkit.masks import causal_mask
from attnkit.models.config import TransformerConfig
from attnkit.runs.retention import save_checkpoint
from attnkit.scores import Distance, make_score
from attnkit.train.loss import smoothed_loss
from attnkit.train.schedule import noam_lr
from attnkit.viz.explorer import AttentionRecord
from attnkit.viz.figures import plot

HUGE = 10 ** 400  # beyond every float


# --- ints -------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [True, False, 2.0, "3", None, [1], 1 + 0j])
def test_an_int_of_the_wrong_kind_is_both_a_type_and_a_value_error(value):
    with pytest.raises(WrongKindError,
                       match=rf"^n must be a positive int; got {re.escape(repr(value))}$") as e:
        check_positive_int("n", value)
    assert isinstance(e.value, TypeError) and isinstance(e.value, ValueError)


@pytest.mark.parametrize("check, value, expected", [
    (check_positive_int, 0, "a positive int"),
    (check_positive_int, -HUGE, "a positive int"),
    (check_nonnegative_int, -1, "a non-negative int"),
])
def test_an_int_out_of_its_range_is_a_value_error(check, value, expected):
    with pytest.raises(ValueError, match=rf"^size must be {expected}; got -?\d+") as e:
        check("size", value)
    assert not isinstance(e.value, TypeError)


def test_ints_in_range_are_returned_huge_ones_too():
    assert check_positive_int("n", HUGE) == HUGE
    assert check_nonnegative_int("n", 0) == 0
    assert check_int("seed", -5) == -5
    assert check_int("rank", 3, minimum=0, maximum=3) == 3


@pytest.mark.parametrize("kwargs, value, expected", [
    (dict(minimum=0, maximum=3), 4, "an int in [0, 3]"),
    (dict(minimum=1024), 1023, "an int >= 1024"),
    (dict(maximum=9), 10, "an int <= 9"),
    ({}, "x", "an int"),
])
def test_an_int_range_is_spelled_from_its_bounds(kwargs, value, expected):
    with pytest.raises(ValueError) as e:
        check_int("k", value, **kwargs)
    assert str(e.value) == f"k must be {expected}; got {value!r}"


def test_none_passes_only_where_allowed():
    assert check_positive_int("n", None, allow_none=True) is None
    assert check_nonnegative_int("n", None, allow_none=True) is None
    with pytest.raises(ValueError, match=r"^n must be a non-negative int; got None$"):
        check_nonnegative_int("n", None)


# --- numbers ----------------------------------------------------------------------------

@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, HUGE])
def test_non_finite_and_unrepresentable_numbers_are_refused(value):
    with pytest.raises(ValueError, match=r"^x must be a finite number > 0; got "):
        check_finite("x", value, above=0)


@pytest.mark.parametrize("value", [True, "1.5", None, [1.0]])
def test_a_number_of_the_wrong_kind_is_both_a_type_and_a_value_error(value):
    with pytest.raises(TypeError,
                       match=rf"^x must be a finite number; got {re.escape(repr(value))}$") as e:
        check_finite("x", value)
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize("kwargs, value, expected", [
    (dict(above=0), 0, "a finite number > 0"),
    (dict(minimum=0), -0.5, "a finite number >= 0"),
    (dict(above=1), 1, "a finite number > 1"),
    (dict(below=2), 2, "a finite number < 2"),
    (dict(above=0, maximum=1), 1.5, "a number in (0, 1]"),
    (dict(minimum=0, maximum=1), -1, "a number in [0, 1]"),
])
def test_a_number_range_is_spelled_from_its_bounds(kwargs, value, expected):
    with pytest.raises(ValueError) as e:
        check_finite("x", value, **kwargs)
    assert str(e.value) == f"x must be {expected}; got {value!r}"


def test_numbers_in_range_come_back_as_floats():
    assert check_finite("x", 3, above=0) == 3.0 and isinstance(check_finite("x", 3), float)
    assert check_finite("x", 1, above=0, maximum=1) == 1.0


@pytest.mark.parametrize("value", [1, 1.0, -1e-9, math.nan, math.inf])
def test_a_probability_lies_in_zero_one(value):
    with pytest.raises(ValueError, match=rf"^p must be a number in \[0, 1\); got {value!r}$"):
        check_probability("p", value)


def test_probabilities_in_range_come_back_as_floats():
    assert check_probability("p", 0) == 0.0 and check_probability("p", 0.999) == 0.999


# --- choices ----------------------------------------------------------------------------

def test_a_misspelt_choice_names_the_closest():
    with pytest.raises(ValueError) as e:
        check_choice("backend", "spda", ("auto", "sdpa"))
    assert str(e.value) == ("backend must be one of 'auto', 'sdpa'; got 'spda' "
                            "(did you mean 'sdpa'?)")
    with pytest.raises(ValueError, match=r"; got 'zzz'$"):
        check_choice("backend", "zzz", ("auto", "sdpa"))  # nothing close: no hint


def test_a_choice_in_other_case_names_the_one_meant():
    """"EXACT" is far from "exact" for difflib (one letter in five in common); the case
    alone differs, and that is the hint."""
    with pytest.raises(ValueError, match=r"; got 'EXACT' \(did you mean 'exact'\?\)$"):
        check_choice("--beam-stop", "EXACT", ("exact", "best_ended"))
    with pytest.raises(ValueError, match=r"\(did you mean 'sdpa'\?\)$"):
        check_choice("backend", "SDPA", ("auto", "sdpa"))


@pytest.mark.parametrize("value", [3, None, True, ["auto"], {"auto": 1}])
def test_a_choice_of_the_wrong_kind_is_both_a_type_and_a_value_error(value):
    with pytest.raises(WrongKindError, match=rf"; got {re.escape(repr(value))}$"):
        check_choice("backend", value, ("auto", "sdpa"))


def test_a_bool_is_no_int_among_choices():
    with pytest.raises(ValueError):
        check_choice("n", True, (1, 2))
    assert check_choice("n", 1, (1, 2)) == 1
    assert check_choice("valid_lens", None, (None, "1d")) is None


def test_a_choice_states_the_alternative_and_a_single_choice_reads_plainly():
    with pytest.raises(ValueError) as e:
        check_choice("activation", "swish", ("relu", "gelu"), alternative="an nn.Module")
    assert str(e.value) == "activation must be one of 'relu', 'gelu' or an nn.Module; got 'swish'"
    with pytest.raises(ValueError, match=r"^type must be 'word'; got 'char'$"):
        check_choice("type", "char", ("word",))


def test_closest_is_what_the_command_line_hints_with():
    assert closest("--beam-szie", ["--beam-size", "--n-best"], cutoff=0.75) == "--beam-size"
    assert closest(3, ["3"]) is None and closest("x", []) is None


# --- divisibility, auto, and what a message shows -------------------------------------

def test_divisibility_names_both_sizes():
    assert check_divisible("num_hiddens", 12, "num_heads", 4) == 12
    with pytest.raises(ValueError) as e:
        check_divisible("num_hiddens", 10, "num_heads", 4)
    assert str(e.value) == "num_hiddens must be divisible by num_heads = 4; got 10"


@pytest.mark.parametrize("label, value, said", [
    ("threads", "0", "threads must be auto or a positive int; got '0'"),
    ("threads", True, "threads must be auto or a positive int; got True"),
    ("", "-2", "expected auto or a positive int; got '-2'"),  # argparse names the flag
])
def test_auto_or_a_positive_int(label, value, said):
    assert parse_positive_or_auto("t", "auto") == "auto" and parse_positive_or_auto("t", "3") == 3
    with pytest.raises(ValueError) as e:
        parse_positive_or_auto(label, value)
    assert str(e.value) == said


def test_a_long_value_given_is_cut_short_in_the_message():
    with pytest.raises(ValueError) as e:
        check_positive_int("n", "9" * 10_000)
    assert len(str(e.value)) < 120 and str(e.value).endswith("...")


# --- the places that once checked by hand say it in the one shape ------------------------

_DATE = datetime.date(2000, 1, 1)
_W = torch.ones(1, 2, 2)
_LOGITS, _TARGET = torch.zeros(1, 3), torch.zeros(1, dtype=torch.long)
_DIVISIBLE = "num_hiddens must be divisible by num_heads = 4; got 10"
_BACKEND = "backend must be one of 'auto', .*; got "
_CKPT = dict(model=None, optimizer=None, scheduler=None, config={})

PLACES = {  # a call that once failed with a message of its own -> the shared message
    "nn heads": (lambda: nn.MultiHeadAttention(10, 4, 0.0), _DIVISIBLE),
    "nn kv heads": (lambda: nn.MultiHeadAttention(8, 4, 0.0, num_kv_heads=3),
                    "num_heads must be divisible by num_kv_heads = 3; got 4"),
    "config heads": (lambda: TransformerConfig(src_vocab_size=5, tgt_vocab_size=5,
                                               num_hiddens=10, num_heads=4),
                     "TransformerConfig.num_hiddens must be divisible by num_heads = 4; got 10"),
    "d2l heads": (lambda: d2l.MultiHeadAttention(10, 4, 0.0), _DIVISIBLE),
    "d2l zero heads": (lambda: d2l.MultiHeadAttention(8, 0, 0.0),
                       "num_heads must be a positive int; got 0"),
    "nn backend": (lambda: nn.MultiHeadAttention(8, 2, 0.0, backend="sdap"),
                   _BACKEND + r"'sdap' \(did you mean 'sdpa'\?\)$"),
    "nn attention backend": (lambda: nn.DotProductAttention(backend="fast"), _BACKEND + "'fast'"),
    "backend kind": (lambda: explain_backend(None, backend=3), _BACKEND + "3$"),
    "sigma": (lambda: Distance(sigma=0), "sigma must be a finite number > 0; got 0$"),
    "sigma inf": (lambda: Distance(sigma=math.inf), "sigma must be a finite number > 0; got inf"),
    "sigma huge": (lambda: Distance(sigma=HUGE), "sigma must be a finite number > 0; got 1000"),
    "score": (lambda: make_score("cosine"),
              "score must be one of 'dot', .* or an attnkit.scores.Score; got 'cosine'"),
    "rotary base": (lambda: nn.RotaryEmbedding(8, base=math.inf),
                    "base must be a finite number > 1; got inf"),
    "activation": (lambda: nn.PositionWiseFFN(num_hiddens=4, ffn_num_hiddens=8,
                                              activation="rleu"),
                   r"activation must be one of 'relu', 'gelu' or an nn.Module; got 'rleu' "
                   r"\(did you mean 'relu'\?\)"),
    "mask size": (lambda: causal_mask(True, 3), "num_queries must be a non-negative int; got True"),
    "cost dtype": (lambda: attention_cost("dot", batch=1, num_queries=2, num_keys=2,
                                          query_size=4, dtype="fp16"),
                   "dtype must be one of 'float32', .*; got 'fp16'"),
    "schedule d_model": (lambda: noam_lr(1, d_model=True, warmup=4),
                         "d_model must be a positive int; got True"),
    "schedule scale": (lambda: noam_lr(1, d_model=8, warmup=4, scale=math.inf),
                       "scale must be a finite number > 0; got inf"),
    "smoothing": (lambda: smoothed_loss(_LOGITS, _TARGET, epsilon=1.0),
                  r"epsilon must be a number in \[0, 1\); got 1.0"),
    "min_freq": (lambda: WordTokenizer.train(["a"], min_freq=0),
                 "min_freq must be a positive int; got 0"),
    "coverage": (lambda: SentencePieceTokenizer.train(["a"], vocab_size=8,
                                                      character_coverage="all"),
                 r"character_coverage must be a number in \(0, 1\]; got 'all'"),
    "tokenizer kind": (lambda: TokenizerPair.train("bytes", [("a", "b")]),
                       "kind must be one of 'char', .*; got 'bytes'"),
    "date format": (lambda: format_date(_DATE, "iso"), "fmt must be one of .*; got 'iso'"),
    "date count": (lambda: generate_pairs(-1, seed=0), "n must be a non-negative int; got -1"),
    "batching seed": (lambda: BatchingConfig(max_tokens=64, seed=True),
                      "seed must be an int; got True"),
    "shard rank": (lambda: shard_batch(None, 2, 2), r"rank must be an int in \[0, 1\]; got 2"),
    "valid fraction": (lambda: split_pairs([], valid_fraction=math.nan, seed=0),
                       r"valid_fraction must be a number in \[0, 1\]; got nan"),
    "multi30k lang": (lambda: multi30k_files("x", "train", "en", "english"),
                      "tgt_lang must be one of .*; got 'english'"),
    "explorer layer": (lambda: AttentionRecord("cross", -1, _W),
                       "layer must be a non-negative int; got -1"),
    "explorer kind": (lambda: AttentionRecord("crosss", 0, _W),
                      r"kind must be one of .*; got 'crosss' \(did you mean 'cross'\?\)"),
    "figure": (lambda: plot("masks3"),
               "figure name must be one of 'attention-maps', .*; got 'masks3'"),
    "chunk bytes": (lambda: ChunkedBackend(max_block_bytes=True),
                    "max_block_bytes must be an int >= 1024; got True"),
    "checkpoint step": (lambda: save_checkpoint("unused", **_CKPT, train_state={"step": -1}),
                        r"train_state\['step'\] must be a non-negative int; got -1"),
    "bench threads": (lambda: thread_list("2,0"),
                      "expected a comma list of positive ints; got '2,0'"),
}


@pytest.mark.parametrize("call, said", PLACES.values(), ids=PLACES.keys())
def test_the_places_once_checked_by_hand_give_the_shared_message(call, said):
    with pytest.raises(ValueError, match=f"^{said}"):
        call()
