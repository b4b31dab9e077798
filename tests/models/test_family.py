"""The registry of model families: every family declares what callers ask of it, and the
run format, presets and sizes are read from it."""

import dataclasses

import pytest

from attnkit.models import BahdanauConfig, bahdanau_small, build_model
from attnkit.models.family import (
    FAMILIES,
    MODEL_CONFIGS,
    PRESETS,
    family_of,
    family_of_preset,
    model_config_from_dict,
    model_config_to_dict,
    renamed_fields,
)
from tests._fresh import run_fresh

ALL_PRESETS = sorted(PRESETS)


def test_the_registry_and_every_config_import_no_torch():
    code = ("import sys; from attnkit.models.family import FAMILIES, PRESETS; "
            "[f.config for f in FAMILIES.values()]; [p(11) for p in PRESETS.values()]; "
            "assert 'torch' not in sys.modules, 'the registry imported torch'")
    run_fresh(code)


@pytest.mark.parametrize("preset", ALL_PRESETS)
def test_each_preset_builds_a_config_and_a_module_of_its_family(preset):
    family = family_of_preset(preset)
    config = PRESETS[preset](11, 13)
    assert type(config) is family.config and family_of(config) is family
    import torch

    with torch.device("meta"):
        assert type(build_model(config)) is family.module_class()


@pytest.mark.parametrize("preset", ALL_PRESETS)
def test_each_config_round_trips_through_the_run_format(preset):
    config = PRESETS[preset](11, 13)
    stored = model_config_to_dict(config)
    assert stored["class"] == type(config).__name__ and stored["class"] in MODEL_CONFIGS
    assert model_config_from_dict(stored) == config


def test_the_declared_fields_are_fields_of_the_config():
    for family in FAMILIES.values():
        names = {f.name for f in dataclasses.fields(family.config)}
        layers = {f for stack in family.layer_fields for f in stack}
        assert set(family.size_fields) <= names and layers <= names, family.name
        assert layers <= set(family.size_fields), family.name
        for old, new in family.renamed.items():
            assert old not in names and set(new) <= names, family.name


def test_a_subclass_of_a_config_is_no_family_unless_declared():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Mine(BahdanauConfig):
        pass

    with pytest.raises(TypeError, match="config must be a model config, one of .*; got Mine"):
        family_of(Mine(src_vocab_size=3, tgt_vocab_size=3))
    with pytest.raises(TypeError, match="config must be a model config, one of .*; got dict"):
        model_config_to_dict({"num_hiddens": 8})


def test_an_unknown_preset_is_refused_naming_where():
    with pytest.raises(ValueError, match=r"^run.json: model_class must be one of "
                                         r"'transformer_tiny', .*; got 'gpt'$"):
        family_of_preset("gpt", where="run.json: model_class")
    with pytest.raises(ValueError, match=r"model preset must be one of .*; got None"):
        family_of_preset(None)


# --------------------------------------------------------------- one name for the layers
def test_the_rnn_layers_are_named_as_the_transformers():
    for family in FAMILIES.values():
        names = {f.name for f in dataclasses.fields(family.config)}
        assert {"num_encoder_layers", "num_decoder_layers"} <= names, family.name
        assert "num_layers" not in names, family.name
    assert renamed_fields() == {"num_layers": ("num_encoder_layers", "num_decoder_layers")}


def test_a_config_stored_with_num_layers_still_loads():
    """A run saved before the rename stores ``num_layers``: it loads as both counts."""
    old = {"class": "BahdanauConfig", "src_vocab_size": 11, "tgt_vocab_size": 13,
           "embed_size": 8, "num_hiddens": 16, "num_layers": 3, "dropout": 0.2}
    config = model_config_from_dict(old)
    assert config == bahdanau_small(11, 13, embed_size=8, num_hiddens=16,
                                    num_encoder_layers=3, num_decoder_layers=3)


def test_an_old_name_beside_a_new_one_is_refused_not_guessed():
    both = {**model_config_to_dict(bahdanau_small(11)), "num_layers": 2}
    with pytest.raises(ValueError, match=r"^run: fields of BahdanauConfig missing \[\], "
                                         r"unknown \['num_layers'\]$"):
        model_config_from_dict(both, where="run")


def test_an_rnn_refuses_decoder_layers_other_than_the_encoders():
    with pytest.raises(ValueError, match=r"^BahdanauConfig.num_decoder_layers must equal "
                                         r"num_encoder_layers \(the decoder starts from the "
                                         r"encoder's final state, one per layer\); got 1 and "
                                         r"2$"):
        bahdanau_small(11, num_decoder_layers=1)
