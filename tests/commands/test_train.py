"""``attnkit train``: Tatoeba's three-column file as the README says, what a run writes, a
config file with tables under flag overrides, and a help that explains every option."""

import json
import math

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


SCHEDULE_RUN = ["train", "--data", "dates", "--num-examples", "200", "--valid-size", "10",
                "--eval-sentences", "5", "--max-tokens", "600", "--num-hiddens", "32",
                "--num-heads", "2", "--ffn-num-hiddens", "48", "--num-encoder-layers", "1",
                "--num-decoder-layers", "1", "--bf16", "false", "--threads", "1",
                "--device", "cpu", "--no-progress", "--max-steps", "8", "--log-every", "1",
                "--eval-every", "2", "--checkpoint-every", "0", "--warmup", "3"]


@pytest.mark.parametrize(("flags", "rate"), [
    ([], lambda s: 32 ** -0.5 * min(s ** -0.5, s * 3 ** -1.5)),
    (["--schedule", "noam", "--lr-scale", "2"],
     lambda s: 2 * 32 ** -0.5 * min(s ** -0.5, s * 3 ** -1.5)),
    (["--schedule", "inverse_sqrt", "--lr", "0.002", "--warmup-init-lr", "0.0005"],
     lambda s: 0.0005 + 0.0015 * s / 3 if s <= 3 else 0.002 * (3 / s) ** 0.5),
    (["--schedule", "cosine", "--lr", "0.002", "--min-lr", "0.0002", "--total-steps", "7"],
     lambda s: 0.002 * s / 3 if s <= 3 else 0.0002 if s >= 7 else
     0.0002 + 0.0018 * 0.5 * (1 + math.cos(math.pi * (s - 3) / 4))),
    # the exact match of a tiny run stays 0: no validation after the first is better, so
    # with patience 1 the rate halves after each (steps 4, 6) from the next step on
    (["--schedule", "plateau", "--lr", "0.002", "--plateau-patience", "1"],
     lambda s: [0.002 / 3, 0.004 / 3, 0.002, 0.002, 0.001, 0.001, 0.0005, 0.0005][s - 1]),
], ids=["default", "noam", "inverse_sqrt", "cosine", "plateau"])
def test_each_schedule_trains_from_the_command_line_at_its_rates(tmp_path, flags, rate):
    out = tmp_path / "run"
    assert main([*SCHEDULE_RUN, *flags, "--out-dir", str(out)]) == 0
    log = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    used = [r["lr"] for r in log if "lr" in r]
    assert used == pytest.approx([rate(s) for s in range(1, 9)], rel=1e-12)
    assert all(math.isfinite(r["loss"]) for r in log if "loss" in r)
