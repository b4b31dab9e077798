"""What the models say of a config before building it: whether the modules accept it."""

import time

import pytest

from attnkit.models.config import bahdanau_small, transformer_tiny
from attnkit.models.sizes import check_buildable


@pytest.mark.parametrize("config", [
    transformer_tiny(31, positional="alibi", bias=False),
    transformer_tiny(31, score="additive", positional="rope", num_kv_heads=1),
    bahdanau_small(23, 29, num_encoder_layers=3, num_decoder_layers=3),
], ids=["alibi", "additive-rope-mqa", "bahdanau"])
def test_a_config_the_modules_accept_passes(config):
    assert check_buildable(config) is None


def test_a_combination_the_modules_refuse_is_named_by_them():
    config = transformer_tiny(31, positional="alibi", score="dot")  # each field valid alone
    with pytest.raises(ValueError, match=r"positional='alibi' brings its own score .*"
                                         r"got score='dot'"):
        check_buildable(config)


def test_a_million_layers_are_checked_without_building_them():
    started = time.monotonic()
    check_buildable(transformer_tiny(40, num_encoder_layers=10**6, num_decoder_layers=10**6))
    assert time.monotonic() - started < 60  # a meta-device build of two layers per stack


def test_what_is_not_a_model_config_is_refused():
    with pytest.raises(TypeError, match=r"config must be a model config, one of "
                                        r"TransformerConfig, BahdanauConfig, .*; got dict"):
        check_buildable({"num_hiddens": 32})
