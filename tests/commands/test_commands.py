"""The command line end to end on the Tatoeba sample and tiny configs."""

import json
import os
import subprocess
import sys

import pytest

from attnkit.cli import main

from .._data import DATA

TATOEBA = DATA / "tatoeba-eng-fra" / "eng-fra.attrib.txt"
needs_data = pytest.mark.skipif(not TATOEBA.exists(), reason=f"shared data absent: {TATOEBA}")

TINY = ["--num-hiddens", "32", "--num-heads", "2", "--ffn-num-hiddens", "48",
        "--num-encoder-layers", "1", "--num-decoder-layers", "1", "--warmup", "10",
        "--eval-every", "0", "--no-progress", "--device", "cpu", "--eval-sentences", "8",
        "--max-sentence-tokens", "30", "--max-tokens", "800",
        "--bf16", "false", "--threads", "1"]  # the same numbers on every CPU kind


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    if not TATOEBA.exists():
        pytest.skip(f"shared data absent: {TATOEBA}")
    out = tmp_path_factory.mktemp("tatoeba") / "run"
    code = main(["train", "--data", "tsv", "--train-path", str(TATOEBA), "--tokenizer",
                 "sentencepiece", "--vocab-size", "300", "--max-pairs", "1500",
                 "--valid-size", "50", "--max-steps", "9", "--checkpoint-every", "3",
                 "--out-dir", str(out), *TINY])
    assert code == 0
    return out


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


@needs_data
def test_translate_from_arguments_file_and_stdin(run_dir, tmp_path, capsys):
    assert main(["translate", "--checkpoint", str(run_dir), "--beam-size", "2",
                 "Go.", "I am a teacher."]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    f = tmp_path / "in.txt"
    f.write_text("Hello.\nRun!\nWho?\n")
    assert main(["translate", "--checkpoint", str(run_dir), "--input", str(f),
                 "--beam-size", "1"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    r = subprocess.run([sys.executable, "-m", "attnkit.cli", "translate", "--checkpoint",
                        str(run_dir)], input="Stop!\nWait.\n", capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 2


@needs_data
def test_evaluate_reports_sacrebleu_signature_chrf_and_lowercased_bleu(run_dir, tmp_path,
                                                                         capsys):
    lines = TATOEBA.read_text(encoding="utf-8").splitlines()[2000:2030]
    (tmp_path / "src.txt").write_text("\n".join(x.split("\t")[0] for x in lines) + "\n")
    (tmp_path / "ref.txt").write_text("\n".join(x.split("\t")[1] for x in lines) + "\n")
    assert main(["evaluate", "--checkpoint", str(run_dir), "--src", str(tmp_path / "src.txt"),
                 "--ref", str(tmp_path / "ref.txt"), "--beam-size", "2", "--json",
                 "--average", "2"]) == 0
    out = capsys.readouterr().out
    res = json.loads(out[out.index("{"):])
    assert res["sentences"] == 30
    assert res["bleu_signature"].startswith("nrefs:1|case:mixed")
    assert "chrF" in res["chrf_signature"] or "nc:" in res["chrf_signature"]
    assert "lc" in res["bleu_lc_tok_signature"]
    assert 0.0 <= res["bleu"] <= 100.0 and 0.0 <= res["chrf"] <= 100.0


@needs_data
def test_average_writes_a_loadable_checkpoint(run_dir, tmp_path, capsys):
    assert main(["average", "--checkpoint", str(run_dir), "--last", "3", "--out",
                 str(tmp_path / "avg")]) == 0
    assert "averaged 3 checkpoints" in capsys.readouterr().out
    assert main(["translate", "--checkpoint", str(tmp_path / "avg"), "Go."]) == 0


@needs_data
def test_explore_and_attention_map_plot_from_a_checkpoint(run_dir, tmp_path, capsys):
    html = tmp_path / "view.html"
    assert main(["explore", "--checkpoint", str(run_dir), "--src", "I am a teacher.",
                 "--out", str(html)]) == 0
    text = html.read_text()
    assert "teacher" in text and "http://" not in text and "https://" not in text
    assert main(["plot", "attention-maps", "--checkpoint", str(run_dir), "--src", "Go.",
                 "--out", str(tmp_path), "--format", "png"]) == 0
    assert (tmp_path / "attention-maps.png").stat().st_size > 10_000


@needs_data
def test_clear_errors_for_missing_file_bad_value_and_incompatible_checkpoint(run_dir, tmp_path,
                                                                            capsys):
    assert main(["translate", "--checkpoint", str(tmp_path / "nope"), "Go."]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["train", "--model", "gpt", "--out-dir", str(tmp_path / "x")]) == 2
    assert "model must be one of" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    bad = tmp_path / "bad"
    import shutil

    shutil.copytree(run_dir / "checkpoints" / "step-000009", bad)
    meta = json.loads((bad / "config.json").read_text())
    meta["model"]["num_hiddens"] = 48  # a model section that does not match the weights
    (bad / "config.json").write_text(json.dumps(meta))
    assert main(["translate", "--checkpoint", str(bad), "Go."]) == 2
    assert "is corrupt: config.json (size or sha256 differs)" in capsys.readouterr().err
    import hashlib

    manifest = json.loads((bad / "manifest.json").read_text())  # re-sign the edited file
    data = (bad / "config.json").read_bytes()
    manifest["files"]["config.json"] = {"bytes": len(data),
                                        "sha256": hashlib.sha256(data).hexdigest()}
    (bad / "manifest.json").write_text(json.dumps(manifest))
    assert main(["translate", "--checkpoint", str(bad), "Go."]) == 2
    err = capsys.readouterr().err
    assert "attnkit translate: error:" in err and "shape" in err


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


def test_demo_runs_end_to_end_on_a_tiny_budget(tmp_path, capsys):
    """A count of steps, not seconds: the same run on an idle and on a busy machine."""
    assert main(["demo", "--out", str(tmp_path), "--max-steps", "3", "--heldout", "12",
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "trained 3 steps in " in out and "(max_steps = 3 reached)" in out
    assert out.strip().splitlines()[-1].startswith("exact match: ")
    assert (tmp_path / "attention-maps.png").exists()
    assert (tmp_path / "attention-explorer.html").exists()
