"""JoeyNMT 2.3.0 as the peer of ``attnkit bench peers``: its environment, its YAML
equivalent to an attnkit config, its commands and the statistics it leaves."""

from __future__ import annotations

import datetime as _dt
import json
import subprocess
from pathlib import Path

from ...train.config import TrainConfig
from .peer import Peer, write_yaml

JOEYNMT_VERSION = "2.3.0"

#: settings that could not be made equal, said in the recorded section
DIFFERENCES = (
    "Batching: attnkit sorts examples into length buckets before cutting batches of "
    "`max_tokens`; JoeyNMT 2.3.0 has no bucketing (its sampler says so) and cuts batches "
    "from shuffled examples, so the same budget of padded tokens carries fewer real ones.",
    "Batch budget: both count `batch size × longest sentence` (padding included); JoeyNMT "
    "closes a batch once it reaches the budget (the last example may pass it), attnkit "
    "before it would pass it.",
    "Initialisation: each tool's own (attnkit: PyTorch's defaults with N(0, d^-1/2) "
    "embeddings; JoeyNMT: xavier_uniform, its recommended setting for Transformers).",
    "Adam ε: attnkit 1e-9 (the paper's); JoeyNMT 2.3.0 passes no ε to Adam, so PyTorch's "
    "1e-8 applies.",
    "Output length limit: attnkit 2·S + 10 tokens; JoeyNMT its default (1.5 × the "
    "longest source of the batch).",
    "Parameters: 7,031,664 (attnkit) and 7,025,664 (JoeyNMT) at a 6k vocabulary; the "
    "6,000 more are the bias of attnkit's output layer, which JoeyNMT's does not have.",
    "Decoding time is the wall time of each tool's translate command on the file, "
    "start-up and model loading included.",
)

#: what JoeyNMT users rely on, and where attnkit stands (said in the recorded section)
FEATURES = (
    ("early stopping on a validation metric (`patience`)", "yes: `[run] patience` on "
     "validation BLEU (exact match on the date task); JoeyNMT can also watch loss or ppl"),
    ("keeping the best checkpoints (`keep_best_ckpts`, `best.ckpt`)",
     "yes: `[run] keep_best`, `checkpoints/best.json`, `--checkpoint RUN/best`"),
    ("n-best output with scores (`n_best`, `return_prob`)",
     "yes: `attnkit translate --n-best K` (Moses format)"),
    ("attention plots", "yes: `attnkit explore` (HTML) and `attnkit plot`"),
    ("Transformer and RNN (Bahdanau/Luong) models",
     "Transformer, Bahdanau RNN and a GRU seq2seq with dot/bilinear scores (`rnn_dot`)"),
    ("other learning-rate schedules (plateau, cosine, warmup-inverse-sqrt)",
     "yes: `[optim] schedule`: noam, inverse_sqrt, cosine or plateau (`--schedule`)"),
    ("sentencepiece sampling (subword regularisation)",
     "yes: `[tokenizer] sample_alpha` (`--sample-alpha`), unigram sampling or BPE-dropout, "
     "training batches only"),
    ("repetition penalty, no-repeat n-grams in beam search",
     "yes: `--repetition-penalty P`, `--no-repeat-ngram N` (greedy and beam, both engines)"),
    ("ensembles of models", "yes: `--checkpoint` given more than once (mean log-probabilities)"),
    ("pre-trained embeddings", "no"),
    ("TensorBoard logs", "yes: `[run] tensorboard = true` (`--tensorboard`), a mirror of "
     "`metrics.jsonl`"),
)


def joeynmt_config(cfg: TrainConfig, inputs: dict, model_dir: Path, *, beam: int = 1) -> dict:
    """A JoeyNMT 2.3.0 configuration equivalent to the attnkit ``cfg`` (a Transformer)."""
    m = cfg.model.config(cfg.tokenizer.vocab_size, cfg.tokenizer.vocab_size,
                         shared=cfg.tokenizer.shared_vocab)
    d, o = cfg.data, cfg.optim
    side = {"embeddings": {"embedding_dim": m.num_hiddens, "scale": True,
                           "dropout": m.dropout},
            "type": "transformer", "num_layers": m.num_encoder_layers,
            "num_heads": m.num_heads, "hidden_size": m.num_hiddens,
            "ff_size": m.ffn_num_hiddens, "dropout": m.dropout,
            "layer_norm": "pre" if m.pre_norm else "post", "activation": m.activation}
    lang = {"level": "bpe", "lowercase": False, "normalize": False,
            "max_length": d.max_sentence_tokens, "min_length": 1,
            "voc_file": str(inputs["vocab"]), "tokenizer_type": "sentencepiece",
            "tokenizer_cfg": {"model_file": str(inputs["spm"])}}
    prefix = str(inputs["dir"])
    return {
        "name": "multi30k-de-en-peer", "joeynmt_version": JOEYNMT_VERSION,
        "use_cuda": False, "fp16": False, "random_seed": cfg.run.seed,
        "data": {"train": f"{prefix}/train", "dev": f"{prefix}/val",
                 "test": f"{prefix}/test_2016_flickr", "dataset_type": "plain",
                 "src": {"lang": d.src_lang, **lang}, "trg": {"lang": d.tgt_lang, **lang}},
        "testing": {"load_model": str(model_dir / "latest.ckpt"), "beam_size": beam,
                    "beam_alpha": 0.6 if beam > 1 else -1, "batch_size": 64,
                    "batch_type": "sentence", "eval_metrics": ["bleu"]},
        "training": {
            "model_dir": str(model_dir), "overwrite": True, "optimizer": o.optimizer,
            "adam_betas": [o.beta1, o.beta2], "scheduling": "noam",
            "learning_rate_factor": o.lr_scale, "learning_rate_warmup": o.warmup,
            "learning_rate_min": 1e-9, "label_smoothing": o.label_smoothing,
            "loss": "crossentropy", "normalization": "tokens",
            "clip_grad_norm": o.clip_norm, "batch_size": o.max_tokens, "batch_type": "token",
            "eval_batch_size": 64, "eval_batch_type": "sentence", "epochs": 100000,
            "validation_freq": 10**9, "logging_freq": 100, "keep_best_ckpts": 1,
            "shuffle": True, "num_workers": 0, "print_valid_sents": []},
        "model": {"initializer": "xavier_uniform", "embed_initializer": "xavier_uniform",
                  "bias_initializer": "zeros", "init_gain": 1.0,
                  "tied_embeddings": m.share_embeddings, "tied_softmax": m.tie_output,
                  "encoder": dict(side), "decoder": dict(side)},
    }


def _joeynmt_train_seconds(log_text: str) -> float:
    """Seconds between JoeyNMT's ``EPOCH 1`` log line and its ``Interrupt`` (or last) line."""
    stamps = []
    for line in log_text.splitlines():
        try:
            t = _dt.datetime.strptime(line[:19], "%Y-%m-%d %H:%M:%S")
        except ValueError:
            continue
        stamps.append((t, line))
    begin = next(t for t, line in stamps if "EPOCH 1" in line)
    end = next((t for t, line in stamps if "Interrupt at epoch" in line), stamps[-1][0])
    return (end - begin).total_seconds()


class JoeyNMT(Peer):
    """JoeyNMT 2.3.0: trained until SIGINT (on which it saves ``latest.ckpt``), decoded by
    ``joeynmt translate`` from stdin to stdout."""

    name, display, title = "joeynmt", "JoeyNMT", f"JoeyNMT {JOEYNMT_VERSION}"
    section, training_file = "peers", "training.json"  # as before there were other peers
    bleu_margin, features = 2.0, FEATURES

    # JoeyNMT 2.3.0 imports importlib_metadata without declaring it, and calls
    # SentencePieceProcessor.SetVocabulary, which sentencepiece 0.2 no longer has
    version, pins = JOEYNMT_VERSION, ("importlib-metadata", "sentencepiece<0.2")
    probe = ("import importlib_metadata, joeynmt, sentencepiece as s, torch; "
             "assert hasattr(s.SentencePieceProcessor, 'SetVocabulary'); "
             "print(joeynmt.__version__, torch.__version__)")

    def differences(self, cfg) -> list[str]:
        return list(DIFFERENCES)

    def train_command(self, python: Path, cfg, inputs: dict, work: Path) -> list[str]:
        config = joeynmt_config(cfg, inputs, work / self.name)
        yaml_path = self.written_config(python, work / "joeynmt.yaml", config)
        return [str(python), "-m", "joeynmt", "train", str(yaml_path), "--skip-test"]

    def started(self, log_text: str) -> bool:
        """JoeyNMT writes ``EPOCH 1`` once its set-up is done and the first epoch begins."""
        return "EPOCH 1" in log_text

    def stats(self, python: Path, work: Path, log_text: str) -> dict:
        """Steps and target tokens from JoeyNMT's last checkpoint; training time from its
        log (first ``EPOCH 1`` line to the interrupt line)."""
        model_dir = work / self.name
        probe = ("import json, sys, torch; c = torch.load(sys.argv[1], map_location='cpu', "
                 "weights_only=False)['stats_state']; print(json.dumps({'steps': "
                 "int(c['steps']), 'tokens': int(c['total_tokens'])}))")
        out = subprocess.run([str(python), "-c", probe, str(model_dir / "latest.ckpt")],
                             capture_output=True, text=True, check=True).stdout
        stats = json.loads(out)
        seconds = _joeynmt_train_seconds((model_dir / "train.log").read_text(errors="replace"))
        return {**stats, "train_s": seconds, "tok_s": stats["tokens"] / seconds}

    def decode_command(self, python: Path, cfg, inputs: dict, work: Path, src_file: Path,
                       beam: int, out_file: Path) -> tuple[list[str], bool]:
        yaml_path = write_yaml(work / f"joeynmt-beam{beam}.yaml",
                               joeynmt_config(cfg, inputs, work / self.name, beam=beam))
        # stdout: JoeyNMT 2.3.0's ``-o`` fails in translate mode (``args.n_best``)
        return [str(python), "-m", "joeynmt", "translate", str(yaml_path)], True
