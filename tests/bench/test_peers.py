"""The JoeyNMT head-to-head: the equivalent config, the log reading, the verdicts.

The benchmark itself (30 minutes of training per tool, a JoeyNMT virtual
environment) is run with ``attnkit bench peers``; these tests cover the parts
that decide what it measures.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attnkit.bench.peers.joeynmt import (
    DIFFERENCES,
    FEATURES,
    _joeynmt_train_seconds,
    joeynmt_config,
)
from attnkit.bench.peers.measure import PeersResult, shared_inputs
from attnkit.bench.peers.peer import yaml_text
from attnkit.train.config import TrainConfig

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "multi30k-de-en.toml"


def _inputs(tmp_path: Path) -> dict:
    return {"dir": tmp_path / "data", "spm": tmp_path / "data" / "spm.model",
            "vocab": tmp_path / "data" / "vocab.txt"}


def test_joeynmt_config_mirrors_the_shipped_attnkit_config(tmp_path):
    cfg = TrainConfig.from_file(CONFIG)
    joey = json.loads(json.dumps(joeynmt_config(cfg, _inputs(tmp_path), tmp_path / "m")))
    enc, dec, train = joey["model"]["encoder"], joey["model"]["decoder"], joey["training"]
    for side in (enc, dec):
        assert (side["num_layers"], side["hidden_size"], side["num_heads"], side["ff_size"],
                side["dropout"], side["layer_norm"]) == (3, 256, 8, 512, 0.1, "post")
        assert side["embeddings"]["embedding_dim"] == 256 and side["embeddings"]["scale"]
    # shared vocabulary: one embedding for both sides, the output layer untied (as attnkit)
    assert joey["model"]["tied_embeddings"] is True and joey["model"]["tied_softmax"] is False
    assert (train["batch_size"], train["batch_type"]) == (2500, "token")
    assert (train["scheduling"], train["learning_rate_factor"],
            train["learning_rate_warmup"]) == ("noam", 0.6, 400)
    assert train["adam_betas"] == [0.9, 0.98] and train["label_smoothing"] == 0.1
    assert train["clip_grad_norm"] == 1.0 and joey["fp16"] is False
    assert train["validation_freq"] > 10**6  # no validation inside the budget
    for lang, key in (("de", "src"), ("en", "trg")):
        side = joey["data"][key]
        assert side["lang"] == lang and side["tokenizer_type"] == "sentencepiece"
        assert side["voc_file"].endswith("vocab.txt")
        assert side["tokenizer_cfg"]["model_file"].endswith("spm.model")
        assert side["max_length"] == cfg.data.max_sentence_tokens
    assert joey["testing"]["load_model"].endswith("latest.ckpt")


def test_joeynmt_config_follows_changes_of_the_attnkit_config(tmp_path):
    cfg = TrainConfig.from_file(CONFIG, pre_norm=True, max_tokens=4000, label_smoothing=0.2)
    joey = joeynmt_config(cfg, _inputs(tmp_path), tmp_path / "m", beam=5)
    assert joey["model"]["encoder"]["layer_norm"] == "pre"
    assert joey["training"]["batch_size"] == 4000
    assert joey["training"]["label_smoothing"] == 0.2
    assert (joey["testing"]["beam_size"], joey["testing"]["beam_alpha"]) == (5, 0.6)


def test_shared_inputs_give_joeynmt_the_runs_pieces_after_its_own_specials(tmp_path):
    root = tmp_path / "multi30k" / "raw"
    root.mkdir(parents=True)
    words = ("ein Hund läuft schnell über die grüne Wiese "
             "a dog runs fast over the green grass").split()
    for split in ("train", "val", "test_2016_flickr"):
        for lang, shift in (("de", 0), ("en", 8)):
            lines = [" ".join(words[(i + j) % 8 + shift] for j in range(1 + i % 5))
                     for i in range(120)]
            (root / f"{split}.{lang}").write_text("\n".join(lines) + "\n")
    cfg = TrainConfig.from_file(CONFIG, multi30k_root=str(tmp_path / "multi30k"), vocab_size=40)
    inputs = shared_inputs(cfg, tmp_path / "work")
    pieces = inputs["vocab"].read_text(encoding="utf-8").splitlines()
    assert len(pieces) == 40 - 4  # attnkit's <pad> <unk> <bos> <eos> left to JoeyNMT's own
    assert not {"<pad>", "<unk>", "<bos>", "<eos>", "<s>", "</s>"} & set(pieces)
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(inputs["spm"]))
    assert [sp.id_to_piece(i) for i in range(4, 40)] == pieces
    for split in ("train", "val", "test_2016_flickr"):
        assert (inputs["dir"] / f"{split}.de").read_text() == (root / f"{split}.de").read_text()


def test_training_time_is_read_from_the_first_epoch_to_the_interrupt():
    log = "\n".join([
        "2026-11-30 09:00:00,000 - INFO - joeynmt.data - Loading train set...",
        "2026-11-30 09:00:07,123 - INFO - joeynmt.training - EPOCH 1",
        "2026-11-30 09:10:00,000 - INFO - joeynmt.training - Epoch   1, Step: 100, ...",
        "\tcontinuation line without a time stamp",
        "2026-11-30 09:30:07,900 - INFO - joeynmt.training - Interrupt at epoch 3, step 900.",
        "2026-11-30 09:30:09,000 - INFO - joeynmt.training - Checkpoint saved in 900.ckpt."])
    assert _joeynmt_train_seconds(log) == 1800.0
    no_interrupt = log.replace("Interrupt at epoch", "Something at epoch")
    assert _joeynmt_train_seconds(no_interrupt) == 1802.0  # the last line


def _row(steps, tok_s, beam5):
    return {"steps": steps, "train_s": 1800.0, "tokens": int(tok_s * 1800), "tok_s": tok_s,
            "peak_rss_mb": 900.0, "decode_s": {1: 30.0, 5: 90.0},
            "bleu": {1: {"cased": beam5 - 1, "lower": beam5}, 5: {"cased": beam5,
                                                                  "lower": beam5 + 1}}}


@pytest.mark.parametrize(("ours", "theirs", "verdicts"), [
    (_row(3000, 1600.0, 36.0), _row(1500, 1000.0, 33.0), ("met", "met")),
    (_row(3000, 1400.0, 34.5), _row(1500, 1000.0, 33.0), ("NOT met", "NOT met")),
])
def test_verdicts_and_table(ours, theirs, verdicts):
    r = PeersResult({"attnkit": ours, "joeynmt": theirs}, 1800.0, "one after the other",
                    "test_2016_flickr", 1000, "2026-11-30")
    lines = r.targets()
    assert lines[0].endswith(": " + verdicts[0]) and lines[1].endswith(": " + verdicts[1])
    text = r.markdown("attnkit bench peers")
    assert f"| attnkit | 3,000 | {ours['tokens']:,} | {ours['tok_s']:,.0f} |" in text
    assert "| joeynmt | 1,500 | 1,800,000 | 1,000 |" in text
    assert all(d in text for d in DIFFERENCES)
    assert all(f"| {what} | {ours} |" in text for what, ours in FEATURES)


def test_the_yaml_reads_back_with_yaml_1_1_float_rules(tmp_path):
    yaml = pytest.importorskip("yaml")  # PyYAML, JoeyNMT's reader
    cfg = TrainConfig.from_file(CONFIG)
    config = joeynmt_config(cfg, _inputs(tmp_path), tmp_path / "m")
    assert yaml.safe_load(yaml_text(config)) == json.loads(json.dumps(config))
    odd = {"a": 1e-9, "b": -2.5e-07, "c": 1e20, "d": "x1e-05", "e": [0.9, 0.98], "f": 3}
    assert yaml.safe_load(yaml_text(odd)) == odd
    assert isinstance(yaml.safe_load(json.dumps({"a": 1e-9}))["a"], str)  # why it is needed


def test_a_job_started_with_sigint_ignored_can_still_be_interrupted(tmp_path):
    """A benchmark run in the background (``cmd &``) inherits SIGINT ignored; the
    training child must get it back, since JoeyNMT saves its weights on it."""
    import signal
    import sys
    import time

    from attnkit.bench.peers.measure import _Job

    child = ("import time\ntry:\n    print('ready', flush=True)\n    time.sleep(60)\n"
             "except KeyboardInterrupt:\n    print('saved on interrupt', flush=True)\n")
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        job = _Job("child", [sys.executable, "-c", child], tmp_path / "child.log", None)
    finally:
        signal.signal(signal.SIGINT, before)
    deadline = time.time() + 30
    while "ready" not in (tmp_path / "child.log").read_text() and time.time() < deadline:
        time.sleep(0.05)
    job.interrupt()
    while not job.poll() and time.time() < deadline:
        time.sleep(0.05)
    assert job.returncode == 0 and job.peak_rss_mb > 1
    assert "saved on interrupt" in (tmp_path / "child.log").read_text()


@pytest.mark.parametrize("budget", [0, -5.0, float("nan")])
def test_a_budget_that_is_not_positive_is_refused_before_anything_is_made(tmp_path, budget):
    from attnkit.bench.peers.measure import run

    with pytest.raises(ValueError, match=r"--budget \(seconds\) must be a finite number > 0; got "):
        run(budget=budget, work=str(tmp_path / "work"))
    assert not (tmp_path / "work").exists()


def _finished_attnkit_run(root: Path) -> Path:
    """``root/attnkit``: a finished attnkit run whose latest checkpoint records its
    training's steps, seconds and tokens (the golden checkpoint, its progress edited)."""
    import shutil

    from ..runs._edit import edit_json
    from ..runs._helpers import GOLDEN

    ckpt = Path(shutil.copytree(GOLDEN, root / "attnkit" / "checkpoints" / "step-000400"))
    edit_json(ckpt, "train_state.json",
              lambda s: s.update(train_seconds=20.0, train_tokens=5000))
    return ckpt


def test_attnkit_stats_and_the_tokenizer_note_read_the_run_opened_once(tmp_path,
                                                                      monkeypatch):
    """Re-scoring (``reuse``) opens attnkit's run once; its statistics and the comparison of
    sentencepiece models read that opened run without verifying it again."""
    import sys
    import time

    from attnkit.bench.peers.measure import _attnkit_stats, _Job, _same_tokenizer, _trained

    from ..runs._helpers import count_verifications

    ckpt = _finished_attnkit_run(tmp_path)
    (tmp_path / "training.json").write_text(json.dumps({"attnkit": {"steps": 400}}))
    calls = count_verifications(monkeypatch)
    stats, ours = _trained(tmp_path / "unused.toml", None, tmp_path, tmp_path / "python", {},
                           budget=1.0, concurrent=False, reuse=True, log=None)
    assert stats == {"attnkit": {"steps": 400}} and ours.path == ckpt
    job = _Job("attnkit", [sys.executable, "-c", "pass"], tmp_path / "job.log", None)
    deadline = time.time() + 30
    while not job.poll() and time.time() < deadline:
        time.sleep(0.05)
    assert _attnkit_stats(job, ours) == {"steps": 400, "train_s": 20.0, "tokens": 5000,
                                         "tok_s": 250.0, "peak_rss_mb": job.peak_rss_mb}
    spm = ours.tokenizer_dir / "spm.model"
    assert _same_tokenizer(ours, tmp_path) == \
        f"could not compare the sentencepiece models ({spm} missing)"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "spm.model").write_bytes(b"pieces")
    spm.write_bytes(b"pieces")  # after the run was opened: its manifest is not read again
    assert _same_tokenizer(ours, tmp_path) is None
    spm.write_bytes(b"other pieces")
    assert "differs" in _same_tokenizer(ours, tmp_path)
    assert calls == [ckpt]  # one run, one verification


def test_a_reused_run_without_a_checkpoint_that_verifies_gives_a_note(tmp_path):
    from attnkit.bench.peers.measure import _same_tokenizer, _trained

    (tmp_path / "training.json").write_text("{}")
    (tmp_path / "attnkit").mkdir()
    stats, ours = _trained(tmp_path / "unused.toml", None, tmp_path, tmp_path / "python", {},
                           budget=1.0, concurrent=False, reuse=True, log=None)
    assert (stats, ours) == ({}, None)
    assert _same_tokenizer(ours, tmp_path) == \
        "could not compare the sentencepiece models (None missing)"
