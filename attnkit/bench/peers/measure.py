"""How :mod:`attnkit.bench.peers` measures: JoeyNMT's environment and config, both
trainings, both decodings and the table; :func:`run` returns a :class:`PeersResult`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from ..._values import check_finite
from ...data.corpus import load_pairs, multi30k_files, multi30k_test_split
from ...data.tokenizer import TokenizerPair
from ...eval.bleu import corpus_bleu, tokenized_lowercase_bleu
from ...runs.run import Run, open_run
from ...train.config import TrainConfig
from ..report import section_markers

__all__ = ["END", "JOEYNMT_VERSION", "START", "PeersResult", "joeynmt_config", "run"]

START, END = section_markers("peers")
JOEYNMT_VERSION = "2.3.0"
TOOLS = ("attnkit", "joeynmt")
BEAMS = (1, 5)
_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

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
    ("Transformer and RNN (Bahdanau/Luong) models", "Transformer and Bahdanau RNN; no Luong"),
    ("other learning-rate schedules (plateau, cosine, warmup-inverse-sqrt)",
     "no: the paper's warmup schedule only, scaled by `lr_scale`"),
    ("sentencepiece sampling (subword regularisation)", "no"),
    ("repetition penalty, no-repeat n-grams in beam search", "no"),
    ("pre-trained embeddings", "no"),
    ("TensorBoard logs", "no: `metrics.jsonl`, one JSON record per line"),
)


@dataclass
class PeersResult:
    rows: dict  # tool -> measurements
    budget: float
    mode: str
    split: str
    sentences: int
    date: str
    notes: list = field(default_factory=list)
    markers: ClassVar[tuple[str, str]] = (START, END)

    def targets(self) -> list[str]:
        a, j = self.rows.get("attnkit"), self.rows.get("joeynmt")
        if not (a and j):
            return []
        gain = a["bleu"][5]["cased"] - j["bleu"][5]["cased"]
        speed = a["tok_s"] / max(j["tok_s"], 1e-9)
        return [f"BLEU (beam 5, cased): attnkit {gain:+.2f} over JoeyNMT (target >= +2): "
                f"{'met' if gain >= 2 else 'NOT met'}",
                f"training tokens/s: attnkit {speed:.2f}x JoeyNMT (target >= 1.5x): "
                f"{'met' if speed >= 1.5 else 'NOT met'}"]

    def summary(self) -> list[str]:
        lines = []
        for tool, r in self.rows.items():
            lines.append(
                f"{tool:8s} steps {r['steps']:6d}  {r['tok_s']:7.0f} tok/s  peak RSS "
                f"{r['peak_rss_mb']:6.0f} MB  BLEU greedy {r['bleu'][1]['cased']:5.2f} "
                f"beam5 {r['bleu'][5]['cased']:5.2f} (lc {r['bleu'][5]['lower']:5.2f})  "
                f"decode {r['decode_s'][1]:.0f}/{r['decode_s'][5]:.0f} s")
        return lines + self.targets() + list(self.notes)

    def markdown(self, command: str) -> str:
        head = (f"## Versus JoeyNMT {JOEYNMT_VERSION}: Multi30k de→en, equal budget\n\n"
                f"Command: `{command}` ({self.date}). {self.budget / 60:.0f} minutes of "
                f"training each ({self.mode}), one thread each, fp32; test: "
                f"{self.sentences} sentences of {self.split}, scored by sacreBLEU "
                "(cased `13a`; lowercased `13a`).\n\n"
                "| tool | steps | target tokens trained on | target tokens/s | peak RSS (MB) "
                "| BLEU greedy | BLEU beam 5 | lowercased greedy / beam 5 "
                "| decode greedy / beam 5 (s) |\n"
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
        body = "".join(
            f"| {tool} | {r['steps']:,} | {r['tokens']:,} | {r['tok_s']:,.0f} | "
            f"{r['peak_rss_mb']:,.0f} | "
            f"{r['bleu'][1]['cased']:.2f} | {r['bleu'][5]['cased']:.2f} | "
            f"{r['bleu'][1]['lower']:.2f} / {r['bleu'][5]['lower']:.2f} | "
            f"{r['decode_s'][1]:.0f} / {r['decode_s'][5]:.0f} |\n"
            for tool, r in self.rows.items())
        lists = ["", *[f"- {line}" for line in self.targets()],
                 "", "Settings that could not be made equal:", "",
                 *[f"- {d}" for d in DIFFERENCES], *[f"- {n}" for n in self.notes],
                 "", "What JoeyNMT users rely on, in attnkit:", "",
                 "| JoeyNMT feature | attnkit |", "|---|---|",
                 *[f"| {what} | {ours} |" for what, ours in FEATURES]]
        return head + body + "\n".join(lists) + "\n"


# ------------------------------------------------------------------ set-up
def ensure_venv(venv: Path, *, log=print) -> Path:
    """The Python of a virtual environment with JoeyNMT 2.3.0 and this torch, made once."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import importlib_metadata, joeynmt, sentencepiece as s, torch; "
                                "assert hasattr(s.SentencePieceProcessor, 'SetVocabulary'); "
                                "print(joeynmt.__version__, torch.__version__)"]
    want = f"{JOEYNMT_VERSION} {torch.__version__}"
    if python.exists():
        got = subprocess.run(probe, capture_output=True, text=True).stdout.strip()
        if got == want:
            return python
    log(f"making {venv} (joeynmt=={JOEYNMT_VERSION}, torch=={torch.__version__}): minutes")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # JoeyNMT 2.3.0 imports importlib_metadata without declaring it, and calls
    # SentencePieceProcessor.SetVocabulary, which sentencepiece 0.2 no longer has
    pins = [f"joeynmt=={JOEYNMT_VERSION}", f"torch=={torch.__version__.split('+')[0]}",
            "importlib-metadata", "sentencepiece<0.2"]
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", *pins],
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"pip install {' '.join(pins)} failed in {venv}:\n"
                           f"{done.stderr[-2000:]}")
    got = subprocess.run(probe, capture_output=True, text=True).stdout.strip()
    if got != want:
        raise RuntimeError(f"{venv} has joeynmt/torch {got!r}; expected {want!r}")
    return python


def shared_inputs(cfg: TrainConfig, work: Path) -> dict:
    """The sentencepiece model (as ``attnkit train`` makes it), JoeyNMT's vocabulary
    file and links to the raw Multi30k files, in ``work/data``."""
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    spm_file, vocab_file = data / "spm.model", data / "vocab.txt"
    if not spm_file.exists():
        pairs, _, _ = load_pairs(cfg.data, seed=cfg.run.seed)
        t = cfg.tokenizer
        tok = TokenizerPair.train(t.kind, pairs, shared=t.shared_vocab,
                                  vocab_size=t.vocab_size, seed=cfg.run.seed).src
        spm_file.write_bytes(tok.model_proto)
        # JoeyNMT adds its own <unk> <pad> <s> </s> first; the pieces follow in id order
        pieces = [tok.id_to_piece(i) for i in range(tok.vocab_size)]
        vocab_file.write_text("\n".join(p for p in pieces[4:]) + "\n", encoding="utf-8")
    d = cfg.data
    for split in ("train", "val", "test_2016_flickr"):
        for path, lang in zip(multi30k_files(d.multi30k_root, split, d.src_lang, d.tgt_lang,
                                             tokenized=d.tokenized),
                              (d.src_lang, d.tgt_lang)):
            link = data / f"{split}.{lang}"
            if not link.exists():
                link.symlink_to(Path(path).resolve())
    return {"dir": data, "spm": spm_file, "vocab": vocab_file}


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


def yaml_text(config: dict) -> str:
    """``config`` as YAML that PyYAML (JoeyNMT's reader) loads back unchanged.

    JSON is YAML, except that PyYAML follows YAML 1.1, where a float needs a
    dot (``1e-09`` would load as a string): exponents get a ``.0`` mantissa.
    """
    text = json.dumps(config, indent=1)
    return re.sub(r'(?<![\w."])(-?\d+)(e[-+]\d+)', r"\1.0\2", text)


def _check_read_back(python: Path, path: Path, config: dict) -> None:
    """Raise unless JoeyNMT's own YAML reader (in its venv) gives back ``config``."""
    probe = ("import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1], "
             "encoding='utf-8'))))")
    out = subprocess.run([str(python), "-c", probe, str(path)], capture_output=True,
                         text=True, check=True).stdout
    if json.loads(out) != json.loads(json.dumps(config)):
        raise RuntimeError(f"{path} does not read back as written (YAML 1.1 types)")


def _write_yaml(path: Path, config: dict) -> Path:
    path.write_text(yaml_text(config), encoding="utf-8")
    return path


# ---------------------------------------------------------------- training
def _env(threads: int = 1) -> dict:
    env = dict(os.environ)
    env.update({k: str(threads) for k in _THREAD_ENV})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _attnkit_command(config: Path, out_dir: Path, budget: float) -> list[str]:
    return [sys.executable, "-m", "attnkit.cli", "train", "--config", str(config),
            "--threads", "1", "--bf16", "false", "--time-limit", str(budget),
            "--eval-every", "0", "--checkpoint-every", "1000", "--keep-last", "1",
            "--no-progress", "--out-dir", str(out_dir)]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class _Job:
    """One training process: started, optionally pinned to a core, waited for with its
    own peak RSS (``os.wait4``)."""

    def __init__(self, name: str, argv: list[str], log: Path, core: int | None) -> None:
        self.name, self.log_path = name, log
        self.log = log.open("w")
        # SIGINT back to its default in the child: a benchmark started in the background
        # inherits it ignored, and JoeyNMT saves its weights only on KeyboardInterrupt
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=_env(), start_new_session=True,
                                     preexec_fn=_default_sigint)
        if core is not None and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(self.proc.pid, {core})
        self.started, self.peak_rss_mb, self.returncode = time.time(), 0.0, None
        self.interrupted = 0.0

    def poll(self) -> bool:
        """Whether it has ended (reaping it and recording its peak RSS)."""
        if self.returncode is not None:
            return True
        pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
        if pid == 0:
            return False
        self.returncode = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.returncode
        self.peak_rss_mb = usage.ru_maxrss / 1024  # kB on Linux
        self.log.close()
        return True

    def interrupt(self) -> None:
        if self.returncode is None:
            os.kill(self.proc.pid, signal.SIGINT)
            self.interrupted = self.interrupted or time.time()

    def overdue(self, grace: float = 300.0) -> bool:
        """Still running ``grace`` s after an interrupt (then it is killed)."""
        if self.returncode is None and self.interrupted and \
                time.time() - self.interrupted > grace:
            self.proc.kill()
            return True
        return False


def _joeynmt_started(log: Path) -> bool:
    """JoeyNMT writes ``EPOCH 1`` once its set-up is done and the first epoch begins."""
    return log.exists() and "EPOCH 1" in log.read_text(errors="replace")


def _train(jobs: dict, budget: float, *, log=print) -> None:
    """Wait for the jobs; JoeyNMT is interrupted ``budget`` s after its first epoch began."""
    joey_t0 = None
    while not all([job.poll() for job in jobs.values()]):  # a list: poll (reap) every job
        if any(job.returncode for job in jobs.values()):  # one failed: stop the others
            for job in jobs.values():
                job.interrupt()
        joey = jobs.get("joeynmt")
        if joey is not None and joey.returncode is None:
            if joey_t0 is None and _joeynmt_started(joey.log_path):
                joey_t0 = time.time()
                log(f"joeynmt: training started after {joey_t0 - joey.started:.0f} s of set-up")
            if joey_t0 is not None and time.time() - joey_t0 >= budget:
                joey.interrupt()
                joey_t0 = float("inf")  # interrupted once; it saves and ends
        if any(job.overdue() for job in jobs.values()):
            raise RuntimeError("a training process did not end within 300 s of SIGINT; "
                               "killed (see its log in the work folder)")
        time.sleep(1.0)
    for job in jobs.values():
        if job.returncode:
            tail = job.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{job.name} training failed ({job.returncode}); the end of "
                               f"{job.log_path}:\n{tail}")


def train_both(cfg_path: Path, cfg: TrainConfig, work: Path, joey_python: Path, inputs: dict,
               *, budget: float, concurrent: bool, tools=TOOLS, log=print) -> dict:
    """Train each tool for ``budget`` s; returns ``{tool: _Job}`` (ended)."""
    model_dir = work / "joeynmt"
    config = joeynmt_config(cfg, inputs, model_dir)
    yaml_path = _write_yaml(work / "joeynmt.yaml", config)
    _check_read_back(joey_python, yaml_path, config)
    argv = {"attnkit": _attnkit_command(cfg_path, work / "attnkit", budget),
            "joeynmt": [str(joey_python), "-m", "joeynmt", "train", str(yaml_path),
                        "--skip-test"]}
    jobs: dict = {}
    for i, tool in enumerate(tools):
        core = i % (os.cpu_count() or 1) if concurrent else None
        log(f"{tool}: training for {budget:.0f} s" + (f" on core {core}" if concurrent else ""))
        jobs[tool] = _Job(tool, argv[tool], work / f"{tool}-train.log", core)
        if not concurrent:
            _train({tool: jobs[tool]}, budget, log=log)
    _train(jobs, budget, log=log)
    return jobs


def _attnkit_stats(job: _Job, ours: Run) -> dict:
    """Steps, time and target tokens from the progress of attnkit's latest checkpoint."""
    state = ours.train_state
    seconds = state["train_seconds"]
    return {"steps": state["step"], "train_s": seconds, "tokens": state["train_tokens"],
            "tok_s": state["train_tokens"] / seconds, "peak_rss_mb": job.peak_rss_mb}


def _joeynmt_stats(job: _Job, python: Path, model_dir: Path) -> dict:
    """Steps and target tokens from JoeyNMT's last checkpoint; training time from its log
    (first ``EPOCH 1`` line to the interrupt line)."""
    probe = ("import json, sys, torch; c = torch.load(sys.argv[1], map_location='cpu', "
             "weights_only=False)['stats_state']; print(json.dumps({'steps': int(c['steps']), "
             "'tokens': int(c['total_tokens'])}))")
    out = subprocess.run([str(python), "-c", probe, str(model_dir / "latest.ckpt")],
                         capture_output=True, text=True, check=True).stdout
    stats = json.loads(out)
    seconds = _joeynmt_train_seconds((model_dir / "train.log").read_text(errors="replace"))
    return {**stats, "train_s": seconds, "tok_s": stats["tokens"] / seconds,
            "peak_rss_mb": job.peak_rss_mb}


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


# ---------------------------------------------------------------- decoding
def decode(tool: str, work: Path, joey_python: Path, cfg: TrainConfig, inputs: dict,
           src_file: Path, beam: int) -> tuple[list[str], float]:
    """Translate ``src_file`` with the tool's own command; returns (lines, wall seconds)."""
    out = work / f"{tool}-beam{beam}.txt"
    if tool == "attnkit":
        argv = [sys.executable, "-m", "attnkit.cli", "translate", "--checkpoint",
                str(work / "attnkit"), "--input", str(src_file), "--beam-size", str(beam),
                "--length-penalty", "0.6", "--threads", "1"]
    else:
        yaml_path = _write_yaml(work / f"joeynmt-beam{beam}.yaml",
                                joeynmt_config(cfg, inputs, work / "joeynmt", beam=beam))
        # stdout: JoeyNMT 2.3.0's ``-o`` fails in translate mode (``args.n_best``)
        argv = [str(joey_python), "-m", "joeynmt", "translate", str(yaml_path)]
    t0 = time.perf_counter()
    with src_file.open("rb") as stdin:
        done = subprocess.run(argv, stdin=stdin, capture_output=True, env=_env())
    seconds = time.perf_counter() - t0
    if done.returncode:
        raise RuntimeError(f"{tool} translate failed:\n{done.stderr.decode()[-3000:]}")
    out.write_bytes(done.stdout)
    return out.read_text(encoding="utf-8").split("\n")[:-1], seconds


def score(tool: str, work: Path, joey_python: Path, cfg: TrainConfig, inputs: dict,
          refs: list[str]) -> dict:
    bleu, seconds = {}, {}
    for beam in BEAMS:
        hyps, seconds[beam] = decode(tool, work, joey_python, cfg, inputs, inputs["test"],
                                     beam)
        if len(hyps) != len(refs):
            raise RuntimeError(f"{tool} beam {beam}: {len(hyps)} output lines for "
                               f"{len(refs)} sources")
        bleu[beam] = {"cased": corpus_bleu(hyps, refs).score,
                      "lower": tokenized_lowercase_bleu(hyps, refs).score}
    return {"bleu": bleu, "decode_s": seconds}


# --------------------------------------------------------------------- run
def run(*, config: str = "configs/multi30k-de-en.toml", budget: float = 1800.0,
        work: str = "runs/peers", concurrent: bool = False, reuse: bool = False,
        split: str = "test_2016_flickr", limit: int | None = None, log=print) -> PeersResult:
    """Set up, train both tools for ``budget`` s each, decode and score the test split.

    ``reuse`` skips the training of a tool whose finished run is in ``work``
    (its measurements are read back), to re-score without retraining; ``limit``
    scores only the first sentences of the split (a smoke run).
    """
    check_finite("--budget (seconds)", budget, above=0)
    cfg_path, root = Path(config).resolve(), Path(work).resolve()
    root.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig.from_file(cfg_path)
    python = ensure_venv(root / "joeynmt-venv", log=log)
    inputs = shared_inputs(cfg, root)
    d = cfg.data
    srcs, refs = multi30k_test_split(cfg.to_dict()["data"], split,
                                     needed_by="the peers benchmark")
    if limit:
        srcs, refs = srcs[:limit], refs[:limit]
        split = f"{split}[:{limit}]"
    inputs["test"] = inputs["dir"] / f"{split}.{d.src_lang}"
    inputs["test"].write_text("".join(f"{s}\n" for s in srcs), encoding="utf-8")
    stats, ours = _trained(cfg_path, cfg, root, python, inputs, budget=budget,
                           concurrent=concurrent, reuse=reuse, log=log)
    rows = {}
    for tool in TOOLS:
        log(f"{tool}: decoding {split} (greedy, beam 5)")
        rows[tool] = {**stats[tool], **score(tool, root, python, cfg, inputs, refs)}
    notes = [_same_tokenizer(ours, root)]
    return PeersResult(rows, budget, "side by side, one core each" if concurrent else
                       "one after the other", split, len(refs), _dt.date.today().isoformat(),
                       [n for n in notes if n])


def _trained(cfg_path: Path, cfg: TrainConfig, root: Path, python: Path, inputs: dict, *,
             budget: float, concurrent: bool, reuse: bool, log) -> tuple[dict, Run | None]:
    """Each tool's training measurements, read back (``reuse``) or trained now, and
    attnkit's run opened once (its latest checkpoint verified once; ``None`` when a run
    read back has no checkpoint that verifies)."""
    saved = root / "training.json"
    if reuse and saved.exists():
        return json.loads(saved.read_text()), _opened(root / "attnkit")
    for tool in TOOLS:  # a benchmark run starts from nothing
        shutil.rmtree(root / tool, ignore_errors=True)
    jobs = train_both(cfg_path, cfg, root, python, inputs, budget=budget,
                      concurrent=concurrent, log=log)
    ours = open_run(root / "attnkit")  # its latest checkpoint; none is an error here
    stats = {"attnkit": _attnkit_stats(jobs["attnkit"], ours),
             "joeynmt": _joeynmt_stats(jobs["joeynmt"], python, root / "joeynmt")}
    saved.write_text(json.dumps(stats, indent=1))
    return stats, ours


def _opened(run_dir: Path) -> Run | None:
    """The run at ``run_dir`` opened, or ``None`` when it has no checkpoint that verifies."""
    try:
        return open_run(run_dir)
    except (FileNotFoundError, ValueError):
        return None


def _same_tokenizer(ours: Run | None, root: Path) -> str | None:
    """A note if attnkit's run (``ours``, opened) trained a different sentencepiece model
    than JoeyNMT read."""
    spm = None if ours is None else ours.tokenizer_dir / "spm.model"
    if spm is None or not spm.exists():
        return f"could not compare the sentencepiece models ({spm} missing)"
    if spm.read_bytes() != (root / "data" / "spm.model").read_bytes():
        return "WARNING: attnkit's sentencepiece model differs from the one JoeyNMT read"
    return None
