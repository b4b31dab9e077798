"""``attnkit train``: Tatoeba's three-column file as the README says, what a run writes, a
config file with tables under flag overrides, and a help that explains every option."""

import json

import pytest

from attnkit.cli import main

from ._tatoeba import TINY, needs_data


def test_tatoebas_three_column_fra_txt_trains_as_the_readme_says(tmp_path, capsys):
    """``attnkit train --data tsv --train-path fra.txt`` on Tatoeba's current layout:
    English, French, attribution; the attribution is never read as a sentence."""
    rows = [("Go.", "Va !"), ("Hi.", "Salut !"), ("Run!", "Cours\u202f!"), ("Wait!", "Attends !"),
            ("I lost.", "J'ai perdu."), ("I'm home.", "Je suis chez moi.")] * 4
    fra = tmp_path / "fra.txt"
    fra.write_text("".join(f"{en}\t{fr}\tCC-BY 2.0 (France) Attribution: tatoeba.org "
                           f"#{i} (CM) & #{i + 1} (someone)\n" for i, (en, fr) in enumerate(rows)),
                   encoding="utf-8")
    assert main(["train", "--data", "tsv", "--train-path", str(fra), "--tokenizer", "word",
                 "--valid-size", "4", "--max-steps", "2", "--checkpoint-every", "2",
                 "--out-dir", str(tmp_path / "run"), *TINY]) == 0
    said = capsys.readouterr()
    assert f"{fra}: read 24 lines, kept 24 pairs, skipped 0" in said.out + said.err, said
    from attnkit.decode.translator import load_translator

    tokenizers = load_translator(tmp_path / "run").tokenizers
    words = tokenizers.src.idx_to_token + tokenizers.tgt.idx_to_token
    assert "perdu" in words and not any("tatoeba" in w or "attribution" in w for w in words)


@needs_data
def test_train_writes_checkpoints_log_and_tokenizer(run_dir):
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert ckpts == ["step-000003", "step-000006", "step-000009"]
    last = run_dir / "checkpoints" / "step-000009"
    assert (last / "model.safetensors").exists() and (last / "tokenizer" / "spm.model").exists()
    log = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("val_bleu" in r for r in log)


def test_config_file_with_tables_and_flag_overrides(tmp_path):
    from attnkit.commands.train import add_cli_arguments, config_from_args

    cfg_file = tmp_path / "run.toml"
    cfg_file.write_text('[run]\nout_dir = "runs/x"\nmax_steps = 9\n[model]\n'
                        'preset = "transformer_small"\nnum_hiddens = 128\n[optim]\n'
                        'warmup = 100\n')
    import argparse

    p = argparse.ArgumentParser()
    add_cli_arguments(p)
    cfg = config_from_args(p.parse_args(["--config", str(cfg_file), "--warmup", "50",
                                         "--max-steps", "none"]))
    assert (cfg.model.preset, cfg.model.options["num_hiddens"], cfg.optim.warmup,
            cfg.run.max_steps) == ("transformer_small", 128, 50, None)
    (tmp_path / "bad.toml").write_text("learning_rate = 3\n")
    with pytest.raises(ValueError, match=r"unknown config keys \['learning_rate'\]"):
        config_from_args(p.parse_args(["--config", str(tmp_path / "bad.toml")]))


def test_train_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for flag in ("--label-smoothing", "--warmup", "--accum-steps", "--bf16", "--time-limit"):
        assert flag in out
    assert "Adam β2" in out
