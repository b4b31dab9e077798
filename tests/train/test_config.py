"""The training config: tables kept as tables, every value validated with field and file."""

import argparse
import dataclasses
import json
import time

import pytest

from attnkit.commands.train import add_cli_arguments, config_from_args
from attnkit.models import BahdanauConfig, TransformerConfig, build_model
from attnkit.train.config import (
    SECTIONS,
    TrainConfig,
    flat_options,
    load_config_file,
    resume_differences,
    section_fields,
)


def parse(*argv):
    p = argparse.ArgumentParser()
    add_cli_arguments(p)
    return config_from_args(p.parse_args(list(argv)))


def write(tmp_path, text, name="run.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_tables_map_onto_sections_and_round_trip(tmp_path):
    path = write(tmp_path, '[data]\nkind = "tsv"\ntrain_path = "pairs.tsv"\n'
                           '[tokenizer]\nkind = "word"\n[model]\npreset = "transformer_small"\n'
                           'num_kv_heads = 2\npositional = "rope"\nscore = "dot"\n'
                           'activation = "gelu"\nbias = false\npre_norm = true\n'
                           '[optim]\nwarmup = 10\n[run]\nmax_steps = 3\n')
    cfg = TrainConfig.from_file(path)
    assert (cfg.data.kind, cfg.tokenizer.kind, cfg.optim.warmup, cfg.run.max_steps) == (
        "tsv", "word", 10, 3)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    model = cfg.model.config(50, 50, shared=True)
    assert isinstance(model, TransformerConfig)
    assert (model.num_kv_heads, model.positional, model.score, model.activation, model.bias,
            model.pre_norm, model.share_embeddings) == (2, "rope", "dot", "gelu", False, True,
                                                         True)
    assert model.num_hiddens == 256  # from the preset


def test_every_model_option_is_a_flag_and_reaches_the_model():
    cfg = parse("--model", "transformer_tiny", "--num-kv-heads", "1", "--positional", "alibi",
                "--activation", "gelu", "--no-bias", "--pre-norm",
                "--max-len", "128", "--tie-output", "--num-encoder-layers", "1")
    config = cfg.model.config(30, 30, shared=True)
    model = build_model(config)
    attn = model.encoder.blocks[0].attention
    assert attn.num_kv_heads == 1 and attn.W_q.bias is None
    assert len(model.encoder.blocks) == 1 and config.positional == "alibi"
    for f in dataclasses.fields(TransformerConfig) + dataclasses.fields(BahdanauConfig):
        if f.name not in ("src_vocab_size", "tgt_vocab_size"):
            assert f.name in flat_options(), f.name


def test_option_of_the_other_model_is_refused_not_dropped():
    with pytest.raises(ValueError, match=r"--num-heads is not an option of preset "
                                         r"'bahdanau_small' \(BahdanauConfig\); its options: "
                                         r"dropout, embed_size, num_decoder_layers, "
                                         r"num_encoder_layers, num_hiddens"):
        parse("--model", "bahdanau_small", "--num-heads", "4")
    with pytest.raises(ValueError, match=r"--embed-size is not an option of preset "
                                         r"'transformer_tiny'"):
        parse("--embed-size", "2")
    with pytest.raises(ValueError, match=r"--score is not an option of preset "
                                         r"'bahdanau_small' \(BahdanauConfig\)"):
        parse("--model", "bahdanau_small", "--score", "dot")


def test_num_layers_in_a_config_file_names_the_keys_that_replaced_it(tmp_path):
    path = write(tmp_path, '[model]\npreset = "bahdanau_small"\nnum_layers = 1\n')
    with pytest.raises(ValueError) as e:
        TrainConfig.from_file(path)
    assert str(e.value).startswith(f"{path}: unknown config keys ['num_layers'] in [model] "
                                   "(num_layers is now num_encoder_layers and "
                                   "num_decoder_layers); keys of [model]: preset, ")
    assert "\n" not in str(e.value)
    path = write(tmp_path, '[model]\npreset = "bahdanau_small"\nnum_encoder_layers = 1\n'
                           'num_decoder_layers = 1\n')
    config = TrainConfig.from_file(path).model.config(9, 9)
    assert (config.num_encoder_layers, config.num_decoder_layers) == (1, 1)


@pytest.mark.parametrize("preset", ["bahdanau_small", "rnn_dot_small"])
def test_an_rnns_unequal_layers_are_refused_naming_both(preset):
    with pytest.raises(ValueError, match=r"num_decoder_layers must equal num_encoder_layers "
                                         r"\(the decoder starts from the encoder's final "
                                         r"state, one per layer\); got 2 and 3"):
        parse("--model", preset, "--num-encoder-layers", "3")


def test_every_preset_of_every_family_is_a_choice_and_builds():
    from attnkit.models.family import PRESETS, family_of_preset

    for preset in PRESETS:
        config = parse("--model", preset).model.config(9, 9)
        assert type(config) is family_of_preset(preset).config


@pytest.mark.parametrize("text, message", [
    ("warmup = 10\n", r"run.toml: key 'warmup' is outside any table; it belongs in the "
                      r"\[optim\] table"),
    ("[model]\nwarmup = 10\n", r"run.toml: \[model\] warmup: this key belongs in the "
                               r"\[optim\] table"),
    ("[optim]\nlearning_rate = 3\n", r"run.toml: unknown config keys \['learning_rate'\] in "
                                     r"\[optim\]"),
    ("[training]\nx = 1\n", r"run.toml: unknown table \[training\]"),
    ("[optim]\nwarmup = -5\n", r"run.toml: \[optim\] warmup must be a positive int; got -5"),
    ("[optim]\nwarmup = 1.5\n", r"run.toml: \[optim\] warmup must be an int; got 1.5"),
    ("[optim]\nclip_norm = -1.0\n", r"run.toml: \[optim\] clip_norm must be a finite number > 0; "
                                   r"got -1.0"),
    ("[optim]\nlabel_smoothing = 1.0\n", r"\[optim\] label_smoothing must be a number in \[0, 1\)"),
    ("[run]\nbf16 = 1\n", r"run.toml: \[run\] bf16 must be true, false or \"auto\"; got 1"),
    ("[run]\nprogress = 1\n", r"run.toml: \[run\] progress must be a bool; got 1"),
    ("[model]\npreset = \"gpt\"\n", r"\[model\] preset must be one of 'transformer_tiny'"),
    ("[model]\nnum_heads = 5\n", r"run.toml: TransformerConfig.num_hiddens must be divisible "
                                 r"by num_heads = 5; got 64"),
    ("[model]\nscore = \"cosine\"\n", r"run.toml: \[model\] score must be one of 'dot'"),
    ("[data]\nkind = \"tsv\"\n", r"run.toml: data='tsv' needs train_path .*\[data\] "
                                 r"train_path"),
    ("[data]\nmax_sentence_tokens = 200\n[model]\nmax_len = 100\n",
     r"run.toml: \[data\] max_sentence_tokens = 200 needs 201 positions, more than the model's "
     r"positional table \(\[model\] max_len = 100\)"),
    ("[optim\n", r"run.toml: not valid TOML"),
    ("[model]\npositional = \"alibi\"\nscore = \"dot\"\n",
     r"run.toml: positional='alibi' brings its own score"),
])
def test_bad_config_files_name_the_key_and_the_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises((ValueError, TypeError), match=message):
        parse("--config", str(path))


def test_values_are_checked_before_any_data_is_read(tmp_path):
    path = write(tmp_path, '[data]\nkind = "tsv"\ntrain_path = "/no/such/file.tsv"\n'
                           '[optim]\nwarmup = 0\n')
    with pytest.raises(ValueError, match=r"warmup must be a positive int"):
        parse("--config", str(path))


def test_flags_override_the_file_and_are_named_in_messages(tmp_path):
    path = write(tmp_path, "[optim]\nwarmup = 10\n[run]\nmax_steps = 5\n")
    cfg = parse("--config", str(path), "--warmup", "20", "--max-steps", "none")
    assert (cfg.optim.warmup, cfg.run.max_steps) == (20, None)
    with pytest.raises(ValueError, match=r"^--dropout must be a number in \[0, 1\); got 1.5"):
        parse("--dropout", "1.5")
    with pytest.raises(SystemExit):  # argparse: not a number
        parse("--warmup", "ten")


def test_help_comes_from_field_metadata(capsys):
    p = argparse.ArgumentParser()
    add_cli_arguments(p)
    p.print_help()
    out = capsys.readouterr().out
    assert "Adam β2 (paper: 0.98)" in out and "[model]: a preset" in out
    for name in flat_options():
        assert "--" + name.replace("_", "-") in out
    for table in SECTIONS:
        for key, (f, _) in section_fields(table).items():
            assert f.metadata["attnkit"].help, f"{table}.{key} has no help text"


def test_option_names_are_unique_and_kinds_have_their_table_as_flag():
    names = flat_options()
    assert {names["data"][:2], names["tokenizer"][:2], names["model"][:2]} == {
        ("data", "kind"), ("tokenizer", "kind"), ("model", "preset")}


def test_shipped_configs_load(tmp_path):
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.toml")):
        cfg = TrainConfig.from_file(path)
        assert cfg.data.kind == "multi30k" and cfg.model.preset == "transformer_small"
        assert load_config_file(path).keys() <= set(SECTIONS)


@pytest.mark.parametrize("value, said", [
    ("-0.1", r"must be a number in \[0, 1\]; got -0.1"),
    ("1.5", r"must be a number in \[0, 1\]; got 1.5"),
    ("nan", r"must be a number in \[0, 1\]; got nan"),
    ('"0.1"', r"must be a float; got '0.1' \(str\)"),
    ("true", r"must be a float; got True \(bool\)")])
def test_a_bad_sample_alpha_is_refused_naming_the_key(tmp_path, value, said):
    path = write(tmp_path, f'[tokenizer]\nkind = "sentencepiece"\nsample_alpha = {value}\n')
    with pytest.raises((TypeError, ValueError), match=rf"^{path}: \[tokenizer\] sample_alpha "
                                                      rf"{said}$"):
        parse("--config", str(path))


@pytest.mark.parametrize("kind", ["char", "word"])
def test_sample_alpha_needs_a_subword_tokenizer(tmp_path, kind):
    path = write(tmp_path, f'[tokenizer]\nkind = "{kind}"\nsample_alpha = 0.1\n')
    with pytest.raises(ValueError, match=rf"^{path}: \[tokenizer\] sample_alpha = 0.1 draws "
                                         rf"subword segmentations, which only sentencepiece "
                                         rf"makes; \[tokenizer\] kind = '{kind}' segments"):
        parse("--config", str(path))
    with pytest.raises(ValueError, match=rf"^--sample-alpha = 0.1 draws .* --tokenizer = "
                                         rf"'{kind}' segments"):
        parse("--tokenizer", kind, "--sample-alpha", "0.1")
    assert parse("--tokenizer", kind, "--sample-alpha", "0").tokenizer.sample_alpha == 0.0
    cfg = parse("--tokenizer", "sentencepiece", "--sample-alpha", "1")
    assert cfg.tokenizer.sample_alpha == 1.0 and TrainConfig().tokenizer.sample_alpha == 0.0


def test_a_key_a_stored_run_lacks_counts_as_its_default():
    """A run saved before a key existed was trained as its default says."""
    stored = TrainConfig.from_flat(num_heads=2).to_dict()
    del stored["tokenizer"]["sample_alpha"], stored["data"]["max_pairs"]
    assert resume_differences(stored, TrainConfig.from_flat(num_heads=2)) == []
    assert resume_differences(stored, TrainConfig.from_flat(
        num_heads=2, tokenizer="sentencepiece", sample_alpha=0.2, max_pairs=10)) == [
        "data.max_pairs: stored None, given 10", "tokenizer.kind: stored 'char', given "
        "'sentencepiece'", "tokenizer.sample_alpha: stored 0.0, given 0.2"]


def test_resume_differences_ignore_what_may_change():
    stored = TrainConfig.from_flat(num_heads=2, max_steps=10).to_dict()
    same = TrainConfig.from_flat(num_heads=2, max_steps=50, time_limit=30.0, log_every=1,
                                 eval_every=0, checkpoint_every=7, lr_scale=0.5, device="cpu",
                                 backend="reference", bf16=True, keep_last=2)
    assert resume_differences(stored, same) == []
    other = TrainConfig.from_flat(num_heads=2, warmup=10, tokenizer="word", seed=3)
    assert resume_differences(stored, other) == [
        "optim.warmup: stored 4000, given 10", "run.seed: stored 0, given 3",
        "tokenizer.kind: stored 'char', given 'word'"]


def test_paths_in_a_file_are_relative_to_the_file_and_flags_to_the_folder(tmp_path,
                                                                          monkeypatch):
    (tmp_path / "cfg").mkdir()
    path = write(tmp_path / "cfg", '[data]\nkind = "aligned"\ntrain_path = "a.de"\n'
                                   'train_tgt_path = "/abs/a.en"\n[run]\nout_dir = "../out"\n')
    monkeypatch.chdir(tmp_path)
    cfg = parse("--config", "cfg/run.toml", "--valid-path", "v.de")
    assert cfg.data.train_path == str(tmp_path / "cfg" / "a.de")
    assert cfg.data.train_tgt_path == "/abs/a.en" and cfg.run.out_dir == str(tmp_path / "out")
    assert cfg.data.valid_path == "v.de"  # a flag: relative to the working folder
    assert path.is_file()


def test_a_data_root_can_come_from_the_environment(tmp_path, monkeypatch):
    text = '[data]\nkind = "multi30k"\nmulti30k_root = "${ATTNKIT_DATA:-data}/multi30k"\n'
    path = write(tmp_path, text)
    monkeypatch.delenv("ATTNKIT_DATA", raising=False)
    assert TrainConfig.from_file(path).data.multi30k_root == str(tmp_path / "data/multi30k")
    monkeypatch.setenv("ATTNKIT_DATA", "/corpora")
    assert TrainConfig.from_file(path).data.multi30k_root == "/corpora/multi30k"
    assert parse("--data", "multi30k").data.multi30k_root == "/corpora/multi30k"
    monkeypatch.delenv("ATTNKIT_DATA")
    write(tmp_path, '[data]\nkind = "multi30k"\nmulti30k_root = "${ATTNKIT_DATA}/m"\n')
    with pytest.raises(ValueError, match=r"\[data\] multi30k_root uses \$\{ATTNKIT_DATA\}, "
                                         r"which is not set"):
        TrainConfig.from_file(path)
    with pytest.raises(ValueError, match=r"multi30k_root .*or the ATTNKIT_DATA variable"):
        parse("--data", "multi30k")


def test_a_variable_other_than_the_data_root_is_refused_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNKIT_DTA", "/corpora")  # a typo, even when something sets it
    path = write(tmp_path, '[data]\nkind = "multi30k"\nmulti30k_root = "${ATTNKIT_DTA}/m"\n')
    with pytest.raises(ValueError, match=r"run.toml: \[data\] multi30k_root uses "
                                         r"\$\{ATTNKIT_DTA\}; the one variable a config file "
                                         r"may use is \$\{ATTNKIT_DATA\}"):
        TrainConfig.from_file(path)


def test_the_shipped_config_works_from_any_folder(tmp_path, monkeypatch):
    from pathlib import Path

    from .._data import DATA

    config = Path(__file__).resolve().parents[2] / "configs" / "multi30k-de-en.toml"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ATTNKIT_DATA", str(DATA))
    cfg = TrainConfig.from_file(config)
    assert cfg.data.multi30k_root == str(DATA / "multi30k")
    assert cfg.run.out_dir == str(config.parents[1] / "runs" / "multi30k-de-en")
    assert cfg.run.bf16 == "auto" and cfg.run.threads == "auto"


def test_a_missing_corpus_names_what_sets_it(tmp_path):
    from attnkit.data.corpus import load_pairs

    cfg = parse("--data", "multi30k", "--multi30k-root", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"no such file: .*nowhere.*--multi30k-root.*"
                                                r"ATTNKIT_DATA"):
        load_pairs(cfg.data, seed=0)


# ------------------------------------------------------------- non-finite float values
def _float_keys() -> list[str]:
    """Every float key of the schema (flat names), found from the field types."""
    from attnkit._options import split_optional

    return sorted(n for n, (_, _, _, tp) in flat_options().items()
                  if split_optional(tp)[0] is float)


def _means_inf(name: str) -> str | None:
    return flat_options()[name][2].metadata["attnkit"].inf


def _file_for(tmp_path, name: str, value: str):
    table, key, _, _ = flat_options()[name]
    preset = ""
    if table == "model" and key not in {f.name for f in dataclasses.fields(TransformerConfig)}:
        preset = 'preset = "bahdanau_small"\n'
    return write(tmp_path, f"[{table}]\n{preset}{key} = {value}\n"), table, key


def test_the_float_keys_are_found():
    assert {"lr_scale", "clip_norm", "dropout", "label_smoothing", "time_limit"} <= set(
        _float_keys())


@pytest.mark.parametrize("value", ["nan", "-inf", "inf"])
@pytest.mark.parametrize("name", _float_keys())
def test_non_finite_values_are_refused_naming_key_and_file_unless_inf_has_a_meaning(
        tmp_path, name, value):
    path, table, key = _file_for(tmp_path, name, value)
    flag = "--" + name.replace("_", "-")
    if value == "inf" and _means_inf(name):
        for cfg in (parse("--config", str(path)), parse(f"{flag}={value}")):
            assert getattr(getattr(cfg, table), key) == float("inf")
            stored = json.loads(json.dumps(cfg.to_dict(), allow_nan=False))  # as config.json
            assert stored[table][key] == "inf"
            assert TrainConfig.from_dict(stored) == cfg and resume_differences(stored, cfg) == []
        return
    said = r"must be a finite number or inf \(" if _means_inf(name) else r"must be a [^;]*; "
    with pytest.raises(ValueError, match=rf"^{path}: \[{table}\] {key} {said}.*got {value}$"):
        parse("--config", str(path))
    with pytest.raises(ValueError, match=rf"^{flag} {said}.*got {value}$"):
        parse(f"{flag}={value}")  # '=': argparse takes "-inf" alone for an option


def test_the_help_says_what_inf_means_for_the_keys_that_take_it(capsys):
    p = argparse.ArgumentParser()
    add_cli_arguments(p)
    p.print_help()
    out = " ".join(capsys.readouterr().out.split())
    meant = [n for n in _float_keys() if _means_inf(n)]
    assert "clip_norm" in meant and "lr_scale" not in meant
    for name in meant:
        assert f"'inf': {_means_inf(name)}" in out, name


def test_a_model_config_holding_nan_is_refused():
    with pytest.raises(ValueError, match=r"TransformerConfig.dropout must be a number in "
                                         r"\[0, 1\); got nan"):
        TransformerConfig(src_vocab_size=5, tgt_vocab_size=5, dropout=float("nan"))


# ------------------------------------------------------------- absurd int values
def test_a_seed_beyond_32_bits_is_refused_naming_the_key(tmp_path):
    assert parse("--seed", str(2**32 - 1)).run.seed == 2**32 - 1
    with pytest.raises(ValueError, match=r"^--seed must be an int in \[0, 4294967295\]; "
                                         r"got 4294967296$"):
        parse("--seed", str(2**32))
    path = write(tmp_path, "[run]\nseed = 100000000000000000000\n")
    with pytest.raises(ValueError,
                       match=rf"^{path}: \[run\] seed must be an int in \[0, 4294967295\]"):
        parse("--config", str(path))


@pytest.mark.parametrize("flag", ["--num-examples", "--valid-size"])
def test_a_generated_corpus_larger_than_memory_is_refused_before_generating(
        tmp_path, capsys, flag):
    from attnkit.cli import main

    started = time.monotonic()
    code = main(["train", "--data", "dates", flag, str(10**12), "--out-dir",
                 str(tmp_path / "run"), "--no-progress", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "([data] num_examples, valid_size): the generated pairs need about" in err
    assert f"{flag} {10**12}" in err and "this process may use" in err
    assert time.monotonic() - started < 30  # not generated first
    assert not (tmp_path / "run" / "checkpoints").exists()


# ------------------------------------------------------------------ schedules
def test_schedule_keys_are_keys_and_flags_and_noam_stays_the_default(tmp_path):
    assert TrainConfig().optim.schedule == "noam"
    path = write(tmp_path, '[optim]\nschedule = "cosine"\nlr = 5e-4\nwarmup = 10\n'
                           'min_lr = 1e-5\ntotal_steps = 100\n')
    o = parse("--config", str(path), "--total-steps", "200", "--warmup-init-lr", "1e-6").optim
    assert (o.schedule, o.lr, o.warmup, o.min_lr, o.total_steps, o.warmup_init_lr) == \
        ("cosine", 5e-4, 10, 1e-5, 200, 1e-6)
    o = parse("--schedule", "plateau", "--lr", "0.001", "--decrease-factor", "0.25",
              "--plateau-patience", "3").optim
    assert (o.schedule, o.lr, o.decrease_factor, o.plateau_patience) == \
        ("plateau", 0.001, 0.25, 3)


@pytest.mark.parametrize(("toml", "message"), [
    ('[optim]\nschedule = "cosin"', r"\[optim\] schedule must be one of 'noam', "
     r"'inverse_sqrt', 'cosine', 'plateau'; got 'cosin' \(did you mean 'cosine'\?\)$"),
    ('[optim]\nschedule = "Plateau"', r".*; got 'Plateau' \(did you mean 'plateau'\?\)$"),
    ('[optim]\nschedule = 1', r"\[optim\] schedule must be a str; got 1 \(int\)$"),
    ('[optim]\nschedule = "cosine"\nlr = -1e-3\nmax_steps = 9',
     r"\[optim\] lr must be a finite number > 0; got -0.001$"),
    ('[optim]\nschedule = "cosine"\nlr = nan', r"\[optim\] lr must be a finite number > 0; "
                                              r"got nan$"),
    ('[optim]\nschedule = "inverse_sqrt"\nlr = "1e-3"',
     r"\[optim\] lr must be a float or none; got '1e-3' \(str\)$"),
    ('[optim]\nschedule = "inverse_sqrt"', r"\[optim\] schedule = 'inverse_sqrt' needs "
                                           r"\[optim\] lr, its peak learning rate"),
    ('[optim]\nmin_lr = 1e-5', r"\[optim\] min_lr = 1e-05 is read only by schedule 'cosine' "
                               r"or 'plateau', not by \[optim\] schedule = 'noam'; remove it"),
    ('[optim]\nlr = 0.001', r"\[optim\] lr = 0.001 is read only by schedule 'inverse_sqrt' or "
                            r"'cosine' or 'plateau', not by \[optim\] schedule = 'noam'"),
    ('[optim]\nschedule = "plateau"\nlr = 0.001\ntotal_steps = 10',
     r"\[optim\] total_steps = 10 is read only by schedule 'cosine', not by \[optim\] "
     r"schedule = 'plateau'"),
    ('[optim]\nschedule = "cosine"\nlr = 0.001',
     r"\[optim\] schedule = 'cosine' decays until a known step: give \[optim\] total_steps or "
     r"\[run\] max_steps$"),
    ('[optim]\nschedule = "cosine"\nlr = 0.001\nwarmup = 50\n[run]\nmax_steps = 50',
     r"\[run\] max_steps = 50 ends the cosine before it starts: it must be > \[optim\] "
     r"warmup = 50$"),
    ('[optim]\nschedule = "cosine"\nlr = 0.001\nwarmup = 5\ntotal_steps = 2',
     r"\[optim\] total_steps = 2 ends the cosine before it starts"),
    ('[optim]\nschedule = "cosine"\nlr = 0.001\nmin_lr = 0.01\ntotal_steps = 9000',
     r"\[optim\] min_lr must be a number <= \[optim\] lr = 0.001; got 0.01$"),
    ('[optim]\nschedule = "inverse_sqrt"\nlr = 0.001\nwarmup_init_lr = 0.01',
     r"\[optim\] warmup_init_lr must be a number <= \[optim\] lr = 0.001; got 0.01$"),
    ('[optim]\nschedule = "plateau"\nlr = 0.001\ndecrease_factor = 1.0',
     r"\[optim\] decrease_factor must be a number in \(0, 1\); got 1$"),
    ('[optim]\nschedule = "plateau"\nlr = 0.001\ndecrease_factor = 0',
     r"\[optim\] decrease_factor must be a finite number > 0; got 0.0$"),
    ('[optim]\nschedule = "plateau"\nlr = 0.001\nplateau_patience = 0',
     r"\[optim\] plateau_patience must be a positive int; got 0$"),
    ('[optim]\nschedule = "plateau"\nlr = 0.001\nplateau_patience = 1.5',
     r"\[optim\] plateau_patience must be an int; got 1.5 \(float\)$"),
    ('[optim]\nschedule = "plateau"\nlr = 0.001\n[run]\neval_every = 0',
     r"\[optim\] schedule = 'plateau' follows the validation score, which \[run\] "
     r"eval_every = 0 turns off"),
    ('[optim]\nschedule = "inverse_sqrt"\nlr = 0.001\nwarmup_init_lr = -1.0',
     r"\[optim\] warmup_init_lr must be a finite number >= 0; got -1.0$"),
])
def test_bad_schedule_settings_are_refused_in_one_line_naming_the_key(tmp_path, toml, message):
    toml = toml.replace("\nmax_steps = 9", "\n[run]\nmax_steps = 9")
    path = write(tmp_path, toml)
    with pytest.raises((TypeError, ValueError), match=rf"^{path}: {message}"):
        parse("--config", str(path))


@pytest.mark.parametrize(("flags", "message"), [
    (["--min-lr", "0.1"], r"--min-lr = 0.1 is read only by schedule 'cosine' or 'plateau', "
                          r"not by --schedule = 'noam'"),
    (["--schedule", "cosine", "--lr", "1e-3"],
     r"--schedule = 'cosine' decays until a known step: give --total-steps or --max-steps$"),
    (["--schedule", "plateau", "--lr", "inf"], r"--lr must be a finite number > 0; got inf$"),
])
def test_bad_schedule_flags_are_named_as_flags(flags, message):
    with pytest.raises(ValueError, match="^" + message):
        parse(*flags)


def test_a_key_another_schedule_reads_may_stay_at_its_default():
    """A config that spells out a default of another schedule's key loses nothing."""
    assert parse("--min-lr", "0", "--decrease-factor", "0.5").optim.schedule == "noam"


def test_a_stored_run_without_the_newer_keys_resumes_with_their_defaults():
    """A run written before a key existed ran with its default: resuming it with the
    default is no difference, resuming it with another value is one."""
    stored = TrainConfig.from_flat(num_heads=2, max_steps=10).to_dict()
    for key in ("schedule", "lr", "warmup_init_lr", "min_lr", "total_steps",
                "decrease_factor", "plateau_patience"):
        del stored["optim"][key]
    del stored["run"]["tensorboard"]
    assert resume_differences(stored, TrainConfig.from_flat(num_heads=2, max_steps=20,
                                                            tensorboard=True)) == []
    other = TrainConfig.from_flat(num_heads=2, schedule="inverse_sqrt", lr=1e-3)
    assert resume_differences(stored, other) == [
        "optim.lr: stored None, given 0.001",
        "optim.schedule: stored 'noam', given 'inverse_sqrt'"]


def test_tensorboard_is_a_bool_key_and_flag(tmp_path):
    assert TrainConfig().run.tensorboard is False
    assert parse("--tensorboard").run.tensorboard is True
    assert parse("--config", str(write(tmp_path, "[run]\ntensorboard = true\n")),
                 "--no-tensorboard").run.tensorboard is False
    path = write(tmp_path, '[run]\ntensorboard = "yes"\n', "bad.toml")
    with pytest.raises(TypeError, match=rf"^{path}: \[run\] tensorboard must be a bool; "
                                        r"got 'yes' \(str\)$"):
        parse("--config", str(path))
