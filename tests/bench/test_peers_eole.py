"""eole 0.6.4 as the peer of ``attnkit bench peers``: the equivalent YAML (checked by
eole's own config classes where its venv exists), what it cannot be given, its log
and ``--peer``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from attnkit.bench.peers import PEER_NAMES
from attnkit.bench.peers.eole import EOLE_VERSION, Eole, eole_config, eole_differences, eole_stats
from attnkit.bench.peers.measure import PEERS, PeersResult
from attnkit.bench.peers.peer import yaml_text
from attnkit.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "multi30k-de-en.toml"
LOG = Path(__file__).with_name("fixtures") / "eole-train.log"
#: the venv ``attnkit bench peers --peer eole`` makes in its default --work
VENV_PYTHON = ROOT / "runs" / "peers" / "eole-venv" / "bin" / "python"


def _inputs(tmp_path: Path) -> dict:
    return {"dir": tmp_path / "data", "spm": tmp_path / "data" / "spm.model",
            "vocab": tmp_path / "data" / "vocab.txt"}


def _equal_settings(config: dict) -> dict:
    """The settings made equal to attnkit's, as eole's config (``config``) states them."""
    model, train = config["model"], config["training"]
    enc, dec = model["encoder"], model["decoder"]
    return {
        "layers": (enc["layers"], dec["layers"]), "hidden": model["hidden_size"],
        "heads": model["heads"], "ffn": model["transformer_ff"],
        "dropout": (train["dropout"], train["attention_dropout"]),
        "shared embeddings": model["share_embeddings"],
        "tied output": model["share_decoder_embeddings"],
        "label smoothing": train["label_smoothing"],
        "adam": (train["optim"], train["adam_beta1"], train["adam_beta2"], train["adam_eps"]),
        "schedule": (train["decay_method"], train["learning_rate"], train["warmup_steps"]),
        "clip": train["max_grad_norm"], "batch": (train["batch_type"], train["batch_size"]),
        "dtype": train["compute_dtype"], "encoder": enc["encoder_layer_style"],
        "vocab": (config["src_vocab_size"], config["share_vocab"]),
    }


SHIPPED = {"layers": (3, 3), "hidden": 256, "heads": 8, "ffn": 512, "dropout": ([0.1], [0.1]),
           "shared embeddings": True, "tied output": False, "label smoothing": 0.1,
           "adam": ("adam", 0.9, 0.98, 1e-9), "schedule": ("noam", 0.6, 400), "clip": 1.0,
           "batch": ("tokens", 2500), "dtype": "fp32", "encoder": "postnorm",
           "vocab": (6000, True)}


def test_eole_config_mirrors_the_shipped_attnkit_config(tmp_path):
    cfg = TrainConfig.from_file(CONFIG)
    eole = json.loads(json.dumps(eole_config(cfg, _inputs(tmp_path), tmp_path / "m")))
    assert _equal_settings(eole) == SHIPPED
    train = eole["training"]
    assert train["valid_steps"] >= 10**9 and train["save_checkpoint_steps"] == 0
    assert (train["world_size"], train["gpu_ranks"], train["num_workers"]) == (1, [], 0)
    assert 0 < train["bucket_size"] <= 4096  # one core fills it between batches
    assert eole["src_vocab"] == eole["tgt_vocab"] == str(_inputs(tmp_path)["vocab"])
    spm = eole["transforms_configs"]["sentencepiece"]
    assert spm["src_subword_model"] == spm["tgt_subword_model"] == str(tmp_path / "data" /
                                                                       "spm.model")
    assert eole["transforms_configs"]["filtertoolong"]["src_seq_length"] == \
        cfg.data.max_sentence_tokens
    assert eole["data"]["corpus_1"]["path_src"].endswith("train.de")


def test_eole_config_follows_changes_of_the_attnkit_config(tmp_path):
    cfg = TrainConfig.from_file(CONFIG, pre_norm=True, max_tokens=4000, label_smoothing=0.2)
    eole = eole_config(cfg, _inputs(tmp_path), tmp_path / "m")
    assert eole["model"]["encoder"]["encoder_layer_style"] == "standard"
    assert eole["training"]["batch_size"] == 4000
    assert eole["training"]["label_smoothing"] == 0.2


def test_the_settings_that_differ_are_named():
    post = eole_differences(TrainConfig.from_file(CONFIG))
    pre = eole_differences(TrainConfig.from_file(CONFIG, pre_norm=True))
    assert any("post-LN" in line and "pre-LN decoders" in line for line in post)
    assert len(pre) == len(post) - 1 and not any("post-LN" in line for line in pre)
    for what in ("bucket_size", "Batch budget", "Initialisation", "Output length",
                 "Parameters", "Training time", "Decoding time"):
        assert any(what in line for line in post), what


_PROBE = """
import json, sys, yaml
from eole.config.run import TrainConfig
c = TrainConfig(**yaml.safe_load(open(sys.argv[1], encoding="utf-8")))
m, t = c.model, c.training
print(json.dumps({"model": {"encoder": {"layers": m.encoder.layers,
    "encoder_layer_style": m.encoder.encoder_layer_style}, "decoder": {"layers": m.decoder.layers},
    "hidden_size": m.hidden_size, "heads": m.heads, "transformer_ff": m.transformer_ff,
    "share_embeddings": m.share_embeddings,
    "share_decoder_embeddings": m.share_decoder_embeddings},
  "training": {k: getattr(t, k) for k in ("dropout", "attention_dropout", "label_smoothing",
    "optim", "adam_beta1", "adam_beta2", "adam_eps", "decay_method", "learning_rate",
    "warmup_steps", "max_grad_norm", "batch_type", "batch_size")} | {"compute_dtype":
    str(t.compute_dtype).replace("torch.float32", "fp32")},
  "src_vocab_size": c.src_vocab_size, "share_vocab": c.share_vocab}))
"""


@pytest.mark.skipif(not VENV_PYTHON.exists(), reason=f"no eole venv at {VENV_PYTHON}")
def test_eole_reads_the_yaml_with_the_settings_intended(tmp_path):
    """eole's own config classes (pydantic, unknown keys refused) read the YAML back with
    every setting made equal."""
    cfg = TrainConfig.from_file(CONFIG)
    path = tmp_path / "eole.yaml"
    path.write_text(yaml_text(eole_config(cfg, _inputs(tmp_path), tmp_path / "m")))
    done = subprocess.run([str(VENV_PYTHON), "-c", _PROBE, str(path)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _equal_settings(json.loads(done.stdout.splitlines()[-1])) == SHIPPED


def test_the_log_of_a_real_eole_training_gives_its_progress():
    text = LOG.read_text(encoding="utf-8")
    assert Eole().started(text)
    assert not Eole().started(text.split("Start training loop")[0])  # still setting up
    assert eole_stats(text) == {"steps": 33, "tokens": 52880, "train_s": 40.502,
                                "tok_s": 52880 / 40.502}


def test_a_log_without_the_interrupt_is_one_clear_error():
    text = LOG.read_text(encoding="utf-8").split("Interrupted after")[0]
    with pytest.raises(RuntimeError, match=r"no 'Interrupted after N steps' line"):
        eole_stats(text)


def test_an_interrupt_before_the_first_step_gives_zero_throughput():
    line = "[2026-12-07 11:13:12,786 INFO] Interrupted after 0 steps, 0.000 s: 0 target tokens"
    assert eole_stats(line) == {"steps": 0, "tokens": 0, "train_s": 0.0, "tok_s": 0.0}


def _row(tok_s, beam5):
    return {"steps": 3000, "train_s": 1800.0, "tokens": int(tok_s * 1800), "tok_s": tok_s,
            "peak_rss_mb": 900.0, "decode_s": {1: 30.0, 5: 90.0},
            "bleu": {1: {"cased": beam5 - 1, "lower": beam5}, 5: {"cased": beam5,
                                                                  "lower": beam5 + 1}}}


@pytest.mark.parametrize(("ours", "verdict"), [(33.0, "met"), (32.9, "NOT met")])
def test_the_eole_table_names_its_peer_and_section(ours, verdict):
    differences = eole_differences(TrainConfig.from_file(CONFIG))
    r = PeersResult({"attnkit": _row(1600.0, ours), "eole": _row(1000.0, 33.0)}, 1800.0,
                    "one after the other", "test_2016_flickr", 1000, "2026-12-07",
                    peer="eole", differences=differences)
    assert r.targets()[0].startswith("BLEU (beam 5, cased): attnkit ")
    assert "over eole (target >= +0)" in r.targets()[0] and r.targets()[0].endswith(verdict)
    text = r.markdown("attnkit bench peers --peer eole")
    assert text.startswith(f"## Versus eole {EOLE_VERSION}: Multi30k")
    assert "| eole | 3,000 |" in text and all(d in text for d in differences)
    assert "JoeyNMT" not in text
    assert r.markers == ("<!-- bench:peers-eole:start -->", "<!-- bench:peers-eole:end -->")
    assert PeersResult({}, 1.0, "", "", 0, "").markers[0] == "<!-- bench:peers:start -->"


def test_an_unknown_peer_is_one_line_naming_the_flag_and_the_choices(tmp_path):
    done = subprocess.run([sys.executable, "-m", "attnkit.cli", "bench", "peers", "--peer",
                           "marian", "--work", str(tmp_path / "w")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines()[-1] == (
        "attnkit bench peers: error: argument --peer: expected one of 'joeynmt', 'eole'; "
        "got 'marian'")
    assert not (tmp_path / "w").exists()


def test_run_refuses_an_unknown_peer_before_anything_is_made(tmp_path):
    from attnkit.bench.peers.measure import run

    with pytest.raises(ValueError, match=r"^--peer must be one of 'joeynmt', 'eole'; got "
                                         r"'Eole' \(did you mean 'eole'\?\)$"):
        run(peer="Eole", budget=1.0, work=str(tmp_path / "work"))
    assert not (tmp_path / "work").exists()
    assert tuple(PEERS) == PEER_NAMES == ("joeynmt", "eole")  # the flag's choices, run's


def test_reuse_without_the_peers_measurements_is_refused(tmp_path, monkeypatch):
    """``--reuse`` in a folder whose training file lacks a tool's row: one line naming the
    file (not a KeyError while scoring)."""
    from attnkit.bench.peers import measure

    monkeypatch.setattr(Eole, "ensure_venv", lambda self, venv, log=print: Path("python"))
    monkeypatch.setattr(measure, "shared_inputs", lambda cfg, root: {"dir": root})
    monkeypatch.setattr(measure, "multi30k_test_split", lambda *a, **k: (["a"], ["b"]))
    (tmp_path / "training-eole.json").write_text(json.dumps({"attnkit": {"steps": 1}}))
    with pytest.raises(ValueError, match=r"^--reuse: .*training-eole.json has no training "
                                         r"measurements of eole; run without --reuse$"):
        measure.run(peer="eole", budget=1.0, work=str(tmp_path), reuse=True, config=str(CONFIG))


def test_a_translate_command_that_writes_no_file_is_one_error(tmp_path, monkeypatch):
    """eole writes its translations to ``--output``: a command that ends without writing
    it (or left an earlier run's file) is refused, not scored."""
    from attnkit.bench.peers import measure

    src = tmp_path / "src.de"
    src.write_text("ein Hund\n")
    (tmp_path / "eole-beam1.txt").write_text("a translation of an earlier run\n")
    monkeypatch.setattr(Eole, "decode_command", lambda self, *a: ([sys.executable, "-c",
                                                                   "pass"], False))
    with pytest.raises(RuntimeError, match=r"^eole translate ended without writing .*"
                                           r"eole-beam1.txt"):
        measure.decode("eole", tmp_path, Eole(), Path("python"), None, {}, src, 1)


ROPE_GQA = ROOT / "configs" / "multi30k-de-en-rope-gqa.toml"


def test_positions_and_grouped_heads_follow_the_attnkit_config(tmp_path):
    shipped = eole_config(TrainConfig.from_file(CONFIG), _inputs(tmp_path), tmp_path / "m")
    rope = eole_config(TrainConfig.from_file(ROPE_GQA), _inputs(tmp_path), tmp_path / "m")
    assert (shipped["model"]["position_encoding_type"], shipped["model"]["heads_kv"],
            shipped["model"]["embeddings"]["normalize"]) == ("SinusoidalInterleaved", None,
                                                             False)
    assert (rope["model"]["position_encoding_type"], rope["model"]["heads_kv"]) == ("Rotary", 2)
    assert rope["model"]["rope_config"] == {"rotary_interleave": True, "rotary_theta": 10000,
                                            "rotary_dim": 0}
    # attnkit scales every embedding by √d; without a sinusoidal encoding eole's
    # ``normalize`` does it
    assert rope["model"]["embeddings"]["normalize"] is True
    learned = eole_config(TrainConfig.from_file(CONFIG, positional="learned"),
                          _inputs(tmp_path), tmp_path / "m")["model"]["embeddings"]
    assert (learned["position_encoding_type"], learned["n_positions"]) == ("Learned", 1024)


def test_what_eole_cannot_do_is_said_for_the_config_given():
    assert not any("score" in line or "Learned" in line
                   for line in eole_differences(TrainConfig.from_file(CONFIG)))
    dot = eole_differences(TrainConfig.from_file(CONFIG, score="dot"))
    assert "Attention score: attnkit `dot`; eole 0.6.4 has the scaled dot product only." in dot
    learned = eole_differences(TrainConfig.from_file(CONFIG, positional="learned"))
    assert any(line.startswith("Learned positions:") for line in learned)


@pytest.mark.skipif(not VENV_PYTHON.exists(), reason=f"no eole venv at {VENV_PYTHON}")
def test_eole_reads_rotary_positions_and_grouped_heads(tmp_path):
    path = tmp_path / "eole.yaml"
    path.write_text(yaml_text(eole_config(TrainConfig.from_file(ROPE_GQA), _inputs(tmp_path),
                                          tmp_path / "m")))
    probe = ("import json, sys, yaml\nfrom eole.config.run import TrainConfig\n"
             "c = TrainConfig(**yaml.safe_load(open(sys.argv[1])))\n"
             "e, d, r = c.model.encoder, c.model.decoder, c.model.encoder.rope_config\n"
             "print(json.dumps([e.position_encoding_type, d.position_encoding_type, e.heads_kv,"
             " d.heads_kv, r.rotary_interleave, r.rotary_theta, c.model.embeddings.normalize]))")
    done = subprocess.run([str(VENV_PYTHON), "-c", probe, str(path)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == ["Rotary", "Rotary", 2, 2, True, 10000,
                                                        True]
