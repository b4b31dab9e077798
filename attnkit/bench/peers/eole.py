"""eole 0.6.4 (OpenNMT-py's successor) as the peer of ``attnkit bench peers``: its
environment, its YAML equivalent to an attnkit config, its commands and the statistics
read from its log."""

from __future__ import annotations

import re
from pathlib import Path

from ...train.config import TrainConfig
from .peer import Peer

EOLE_VERSION = "0.6.4"

#: ``eole train`` that, on SIGINT, saves the weights and logs its progress: eole 0.6.4
#: saves only every ``save_checkpoint_steps`` and at the end of ``train_steps``, and a
#: KeyboardInterrupt leaves its training loop without a save
LAUNCHER = '''\
import sys
import time

from eole.bin.main import main
from eole.trainer import Trainer
from eole.utils.logging import logger

_train, _train_step = Trainer.train, Trainer._train_step


def train_step(self, batches, normalization, total_stats, *args, **kwargs):
    self.peer_total = total_stats  # the statistics of the whole training
    return _train_step(self, batches, normalization, total_stats, *args, **kwargs)


def train(self, *args, **kwargs):
    try:
        return _train(self, *args, **kwargs)
    except KeyboardInterrupt:
        total, steps = getattr(self, "peer_total", None), self.optim.training_step - 1
        seconds = 0.0 if total is None else time.time() - total.start_time
        logger.info("Interrupted after %d steps, %.3f s: %d target tokens", steps, seconds,
                    0 if total is None else total.n_tokens)
        self.model_saver.save(steps, moving_average=self.moving_average)
        logger.info("Saved the weights of step %d", steps)


Trainer.train, Trainer._train_step = train, train_step
sys.argv = ["eole", "train", "--config", sys.argv[1]]
main()
'''

_INTERRUPTED = re.compile(r"Interrupted after (\d+) steps, ([\d.]+) s: (\d+) target tokens")
_STARTED = "Start training loop"


#: attnkit's positional kinds as eole names them
POSITIONS = {"sinusoidal": "SinusoidalInterleaved", "learned": "Learned", "rope": "Rotary",
             "alibi": "Alibi"}


def _positions(kind: str, max_len: int, *, embeddings: bool = False) -> dict:
    """eole's settings of attnkit's positional ``kind``: of the model, or of its
    ``embeddings`` (which add absolute encodings only)."""
    name = POSITIONS[kind]
    if embeddings:
        # attnkit scales every embedding by √d; eole's sinusoidal encoding does it itself,
        # for the other kinds ``normalize`` does
        return {"position_encoding_type": name, "normalize": kind != "sinusoidal",
                **({"n_positions": max_len} if kind == "learned" else {})}
    # attnkit's RoPE: the paper's interleaved pairs over the whole head, base 10000
    rope = {"rope_config": {"rotary_interleave": True, "rotary_theta": 10000,
                            "rotary_dim": 0}} if kind == "rope" else {}
    return {"position_encoding_type": name, **rope}


def eole_config(cfg: TrainConfig, inputs: dict, model_dir: Path) -> dict:
    """An eole 0.6.4 training configuration equivalent to the attnkit ``cfg`` (a
    Transformer) as far as eole allows; :func:`eole_differences` says what is not."""
    m = cfg.model.config(cfg.tokenizer.vocab_size, cfg.tokenizer.vocab_size,
                         shared=cfg.tokenizer.shared_vocab)
    d, o = cfg.data, cfg.optim
    spm, prefix = str(inputs["spm"]), inputs["dir"]
    transforms = ["sentencepiece"]
    configs: dict = {"sentencepiece": {"src_subword_model": spm, "tgt_subword_model": spm,
                                       "src_subword_nbest": 1, "tgt_subword_nbest": 1,
                                       "src_subword_alpha": 0.0, "tgt_subword_alpha": 0.0}}
    if d.max_sentence_tokens is not None:
        transforms.append("filtertoolong")
        configs["filtertoolong"] = {"src_seq_length": d.max_sentence_tokens,
                                    "tgt_seq_length": d.max_sentence_tokens}
    side = {"hidden_size": m.num_hiddens, "layers": m.num_encoder_layers}
    return {
        "seed": cfg.run.seed, "report_every": 100, "overwrite": True,
        # the pieces after attnkit's four specials; eole puts its own four first
        "src_vocab": str(inputs["vocab"]), "tgt_vocab": str(inputs["vocab"]),
        "share_vocab": cfg.tokenizer.shared_vocab, "vocab_size_multiple": 1,
        "src_vocab_size": cfg.tokenizer.vocab_size, "tgt_vocab_size": cfg.tokenizer.vocab_size,
        "data": {"corpus_1": {"path_src": f"{prefix}/train.{d.src_lang}",
                              "path_tgt": f"{prefix}/train.{d.tgt_lang}"}},
        "transforms": transforms, "transforms_configs": configs,
        "model": {
            "architecture": "transformer", "layers": m.num_encoder_layers,
            "hidden_size": m.num_hiddens, "heads": m.num_heads,
            "transformer_ff": m.ffn_num_hiddens, "mlp_activation_fn": m.activation,
            # attnkit's projections and its output layer have biases
            "add_qkvbias": m.bias, "add_final_linear_bias": m.bias, "add_ffnbias": m.bias,
            "generator_bias": True,
            "heads_kv": m.num_kv_heads, **_positions(m.positional, m.max_len),
            "embeddings": {"word_vec_size": m.num_hiddens,
                           **_positions(m.positional, m.max_len, embeddings=True)},
            "share_embeddings": m.share_embeddings,
            "share_decoder_embeddings": m.tie_output,
            "encoder": {"encoder_type": "transformer", **side,
                        "encoder_layer_style": "standard" if m.pre_norm else "postnorm",
                        "final_encoder_layer_norm": m.pre_norm},
            "decoder": {"decoder_type": "transformer", **side,
                        "layers": m.num_decoder_layers},
        },
        "training": {
            "model_path": str(model_dir), "compute_dtype": "fp32", "world_size": 1,
            "gpu_ranks": [], "num_workers": 0, "bucket_size": 2048,
            "batch_type": "tokens", "batch_size": o.max_tokens, "batch_size_multiple": 1,
            "normalization": "tokens", "accum_count": [o.accum_steps],
            "optim": o.optimizer, "adam_beta1": o.beta1, "adam_beta2": o.beta2,
            "adam_eps": o.eps, "weight_decay": o.weight_decay,
            "learning_rate": o.lr_scale, "decay_method": "noam", "warmup_steps": o.warmup,
            "max_grad_norm": o.clip_norm, "label_smoothing": o.label_smoothing,
            "dropout": [m.dropout], "attention_dropout": [m.dropout],
            "param_init_method": "xavier_uniform",
            # no validation and no save but the one on interrupt (:data:`LAUNCHER`)
            "train_steps": 10**9, "valid_steps": 10**9, "save_checkpoint_steps": 0,
            "keep_checkpoint": 1, "save_format": "safetensors",
        },
    }


def eole_differences(cfg: TrainConfig | None) -> list[str]:
    """The settings of ``cfg`` (``None``: a post-LN config, as the shipped ones) that eole
    0.6.4 could not be given, one line each."""
    m = None if cfg is None else cfg.model.config(1, 1)
    lines = []
    if m is None or not m.pre_norm:
        lines.append("Layer norm: attnkit post-LN (encoder and decoder); eole 0.6.4 has "
                     "post-LN encoders (`encoder_layer_style: postnorm`) but only pre-LN "
                     "decoders, with a final layer norm after the decoder.")
    if m is not None and m.positional == "learned":
        lines.append("Learned positions: eole adds them before the √d scale of the "
                     "embeddings (`normalize`), attnkit after it.")
    if m is not None and m.score != "scaled_dot":
        lines.append(f"Attention score: attnkit `{m.score}`; eole 0.6.4 has the "
                     "scaled dot product only.")
    return lines + [
        "Batching: eole fills a bucket of `bucket_size` examples (2048 here, for one core), "
        "sorts it by length and cuts batches of `max_tokens`; attnkit buckets the whole "
        "shuffled training set.",
        "Batch budget: both count `batch size × longest sentence` (padding included) and "
        "close a batch before it would pass `max_tokens`; eole measures a target with its "
        "`<s>` and `</s>` (attnkit with one of them) and a source without `</s>` (attnkit "
        "with it), and leaves out an example whose source repeats one already in its batch.",
        "Source side: eole's encoder reads the source pieces alone; attnkit's reads them "
        "followed by `</s>`.",
        "Initialisation: each tool's own (attnkit: PyTorch's defaults with N(0, d^-1/2) "
        "embeddings; eole: xavier_uniform, its setting for Transformers).",
        "Output length limit: attnkit 2·S + 10 tokens; eole its default (250 tokens).",
        "Parameters: 7,031,664 (attnkit) and 7,032,176 (eole) with the shipped config; the "
        "512 more are the layer norm after eole's pre-LN decoder.",
        "Training time: eole is interrupted `budget` seconds after it logs `Start training "
        "loop`; its steps, seconds and target tokens are those its trainer counted up to "
        "the interrupt (then it saves its weights).",
        "Decoding time is the wall time of each tool's translate command on the file, "
        "start-up and model loading included; eole decodes batches of 64 sentences.",
    ]


def eole_stats(log_text: str) -> dict:
    """Steps, training seconds and target tokens of an eole training that the launcher
    interrupted (its ``Interrupted after ...`` log line)."""
    found = _INTERRUPTED.findall(log_text)
    if not found:
        raise RuntimeError("the eole training log has no 'Interrupted after N steps' line "
                           "(was it interrupted?)")
    steps, seconds, tokens = int(found[-1][0]), float(found[-1][1]), int(found[-1][2])
    return {"steps": steps, "tokens": tokens, "train_s": seconds,
            "tok_s": tokens / seconds if seconds > 0 else 0.0}  # 0 s: before its first step


class Eole(Peer):
    """eole 0.6.4: trained by :data:`LAUNCHER` until SIGINT, decoded by ``eole predict``
    (beam 5 with GNMT's length penalty, α = 0.6)."""

    name, display, title = "eole", "eole", f"eole {EOLE_VERSION}"
    section, training_file = "peers-eole", "training-eole.json"

    version, pins = EOLE_VERSION, ("aiohttp",)  # eole 0.6.4 imports it without declaring it
    probe = "import aiohttp, eole, torch; print(eole.__version__, torch.__version__)"

    def differences(self, cfg) -> list[str]:
        return eole_differences(cfg)

    def train_command(self, python: Path, cfg, inputs: dict, work: Path) -> list[str]:
        config = eole_config(cfg, inputs, work / self.name)
        yaml_path = self.written_config(python, work / "eole.yaml", config)
        launcher = work / "eole-train.py"
        launcher.write_text(LAUNCHER, encoding="utf-8")
        return [str(python), str(launcher), str(yaml_path)]

    def started(self, log_text: str) -> bool:
        return _STARTED in log_text

    def stats(self, python: Path, work: Path, log_text: str) -> dict:
        return eole_stats(log_text)

    def decode_command(self, python: Path, cfg, inputs: dict, work: Path, src_file: Path,
                       beam: int, out_file: Path) -> tuple[list[str], bool]:
        argv = [str(python), "-m", "eole.bin.main", "predict", "--model_path",
                str(work / self.name), "--src", str(src_file), "--output", str(out_file),
                "--beam_size", str(beam), "--batch_size", "64", "--batch_type", "sents",
                "--world_size", "1"]
        if beam > 1:
            argv += ["--length_penalty", "wu", "--alpha", "0.6"]
        return argv, False
