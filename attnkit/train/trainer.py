"""Training a translation model end to end: data → tokenizers → batches → steps.

One :class:`Trainer` serves the Transformer and the Bahdanau model alike
(teacher forcing: the decoder reads the gold target shifted right), on one
process or many (``torchrun``: DistributedDataParallel, gloo on CPU, nccl on
GPU; each rank takes its share of every global batch; only rank 0 writes).

Loss: token-level cross-entropy with label smoothing ε,
``(1 − ε)·(−log p(y)) + ε·mean_v(−log p(v))`` summed over real target tokens
and divided by the tokens of the *global* batch, so the gradient is the same
whether a batch is split over ranks or accumulation steps or not.

Resuming restores model, optimizer, schedule, data position and every RNG from
the latest checkpoint; a run stopped at any point and resumed ends with the
same parameters as one that was never stopped (CPU, same seed).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..data.batching import BatchingConfig, BucketBatcher, shard_batch
from ..data.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    CharTokenizer,
    SentencePieceTokenizer,
    WordTokenizer,
    load_tokenizer,
)
from ..nn.multihead import select_valid
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .loss import smoothed_loss
from .schedule import noam_scheduler

__all__ = ["Trainer", "TokenizerPair", "build_model_for", "load_pairs", "smoothed_loss",
           "valid_targets"]


# ---------------------------------------------------------------------- data
def load_pairs(cfg: TrainConfig) -> tuple[list[tuple[str, str]], list[tuple[str, str]], str]:
    """Training and validation pairs for ``cfg``, and a report of what was read."""
    from ..data import corpus

    if cfg.data == "dates":
        from ..data.generated import generate_heldout_pairs, generate_pairs

        train = generate_pairs(cfg.num_examples, seed=cfg.seed)
        valid = generate_heldout_pairs(cfg.valid_size, seed=cfg.seed + 1)
        return train, valid, f"dates: {len(train)} generated pairs, {len(valid)} held out"
    reports = []
    if cfg.data == "multi30k":
        tr = corpus.load_multi30k(cfg.multi30k_root, "train", cfg.src_lang, cfg.tgt_lang,
                                  tokenized=cfg.tokenized)
        va = corpus.load_multi30k(cfg.multi30k_root, "val", cfg.src_lang, cfg.tgt_lang,
                                  tokenized=cfg.tokenized)
    elif cfg.data == "aligned":
        tr = corpus.read_aligned_files(cfg.train_path, cfg.train_tgt_path)
        va = (corpus.read_aligned_files(cfg.valid_path, cfg.valid_tgt_path)
              if cfg.valid_path else None)
    else:  # tsv
        tr = corpus.read_tsv_pairs(cfg.train_path)
        va = corpus.read_tsv_pairs(cfg.valid_path) if cfg.valid_path else None
    reports.append("train: " + tr.report.summary())
    train = list(tr.pairs)
    if cfg.data == "tsv" and cfg.reverse:
        train = [(t, s) for s, t in train]
    if va is None:
        train, valid = corpus.split_pairs(train, valid_fraction=min(
            0.5, cfg.valid_size / max(1, len(train))), seed=cfg.seed)
    else:
        reports.append("valid: " + va.report.summary())
        valid = list(va.pairs)
        if cfg.data == "tsv" and cfg.reverse:
            valid = [(t, s) for s, t in valid]
    if cfg.max_pairs:
        train = train[: cfg.max_pairs]
    return train, valid, "\n".join(reports)


class TokenizerPair:
    """Source and target tokenizers (the same object when the vocabulary is shared)."""

    def __init__(self, src, tgt):
        self.src, self.tgt = src, tgt

    @property
    def shared(self) -> bool:
        return self.src is self.tgt

    def save(self, directory) -> None:
        """The source tokenizer's files in ``directory`` (so ``load_tokenizer`` reads
        it), the target's in ``directory/tgt`` unless the vocabulary is shared."""
        directory = Path(directory)
        if not self.shared:
            self.tgt.save(directory / "tgt")
        self.src.save(directory)

    @classmethod
    def load(cls, directory) -> TokenizerPair:
        directory = Path(directory)
        src = load_tokenizer(directory)
        tgt_dir = directory / "tgt"
        return cls(src, load_tokenizer(tgt_dir) if tgt_dir.is_dir() else src)

    @classmethod
    def train(cls, cfg: TrainConfig, pairs) -> TokenizerPair:
        srcs, tgts = [s for s, _ in pairs], [t for _, t in pairs]

        def make(texts):
            if cfg.tokenizer == "char":
                return CharTokenizer.train(texts)
            if cfg.tokenizer == "word":
                return WordTokenizer.train(texts)
            return SentencePieceTokenizer.train(texts, vocab_size=cfg.vocab_size,
                                                seed=cfg.seed)

        if cfg.shared_vocab:
            tok = make(srcs + tgts)
            return cls(tok, tok)
        return cls(make(srcs), make(tgts))


# --------------------------------------------------------------------- model
def build_model_for(cfg: TrainConfig, src_vocab: int, tgt_vocab: int, shared: bool):
    """The model named by ``cfg.model`` with ``cfg``'s overrides; returns (model, config)."""
    from ..models import config as mc

    overrides = {}
    is_bahdanau = cfg.model.startswith("bahdanau")
    if cfg.num_hiddens is not None:
        overrides["num_hiddens"] = cfg.num_hiddens
        if is_bahdanau:
            overrides["embed_size"] = cfg.num_hiddens
    if cfg.dropout is not None:
        overrides["dropout"] = cfg.dropout
    if cfg.num_layers is not None:
        if is_bahdanau:
            overrides["num_layers"] = cfg.num_layers
        else:
            overrides["num_encoder_layers"] = overrides["num_decoder_layers"] = cfg.num_layers
    if not is_bahdanau:
        if cfg.num_heads is not None:
            overrides["num_heads"] = cfg.num_heads
        if cfg.ffn_num_hiddens is not None:
            overrides["ffn_num_hiddens"] = cfg.ffn_num_hiddens
        if shared and src_vocab == tgt_vocab:
            overrides["share_embeddings"] = True
        overrides["tie_output"] = cfg.tie_output
        overrides["pre_norm"] = cfg.pre_norm
    model_config = getattr(mc, cfg.model)(src_vocab, tgt_vocab, **overrides)
    return mc.build_model(model_config, backend=cfg.backend), model_config


def model_dim(model_config) -> int:
    return model_config.num_hiddens


# ---------------------------------------------------------------------- loss
def valid_targets(batch) -> torch.Tensor:
    """Target ids ``(n_valid,)`` at the positions ``t < tgt_valid_lens[b]``, in the
    order of the ``only_valid=True`` logits of the models."""
    return select_valid(batch.tgt_out, batch.tgt_valid_lens)


# ---------------------------------------------------------------- the trainer
@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_kind: str) -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK",
                                                                               "0")))


def _resolve_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} asked for, but CUDA is not available")
    return dev


class Trainer:
    """Builds everything from a :class:`TrainConfig` and runs the loop.

    ``Trainer(cfg).fit()`` trains until ``max_steps`` / ``epochs`` /
    ``time_limit``; it resumes from ``out_dir/checkpoints`` if a checkpoint is
    there. Metrics are appended to ``out_dir/metrics.jsonl``.
    """

    def __init__(self, cfg: TrainConfig, *, log=print):
        self.cfg = cfg
        self.log = log
        self.dist = _init_distributed("cuda" if cfg.device.startswith("cuda") or (
            cfg.device == "auto" and torch.cuda.is_available()) else "cpu")
        self.device = _resolve_device(cfg.device, self.dist.local_rank)
        self.out_dir = Path(cfg.out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self._seed_everything(cfg.seed)
        train_pairs, self.valid_pairs, report = load_pairs(cfg)
        resume_from = latest_checkpoint(self.ckpt_dir) if self.ckpt_dir.exists() else None
        if resume_from is not None:
            self.tokenizers = TokenizerPair.load(Path(resume_from) / "tokenizer")
        else:
            self.tokenizers = TokenizerPair.train(cfg, train_pairs)
        self._say(report)
        src_tok, tgt_tok = self.tokenizers.src, self.tokenizers.tgt
        examples = [(src_tok.encode(s), tgt_tok.encode(t)) for s, t in train_pairs]
        self.batcher = BucketBatcher(examples, BatchingConfig(
            max_tokens=cfg.max_tokens, max_len=cfg.max_len, seed=cfg.seed,
            batch_multiple=cfg.batch_multiple or self.dist.world_size))
        self._say(f"batching: {self.batcher.report.summary()}")
        self.model, self.model_config = build_model_for(
            cfg, src_tok.vocab_size, tgt_tok.vocab_size, self.tokenizers.shared)
        self.model.to(self.device)
        self.train_model = self.model
        if self.dist.world_size > 1:
            self.train_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda"
                else None)
        opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = opt_cls(self.model.parameters(), lr=1.0, betas=(cfg.beta1, cfg.beta2),
                                 eps=cfg.eps, weight_decay=cfg.weight_decay)
        self.scheduler = noam_scheduler(self.optimizer, d_model=model_dim(self.model_config),
                                        warmup=cfg.warmup, scale=cfg.lr_scale)
        self.step = 0
        self._valid_batches = None
        self._saved_step = -1
        self.train_seconds = 0.0
        if resume_from is not None:
            info = load_checkpoint(resume_from, model=self.model, optimizer=self.optimizer,
                                   scheduler=self.scheduler, restore_rng=True)
            state = info["train_state"]
            self.step = self._saved_step = state["step"]
            self.train_seconds = state.get("train_seconds", 0.0)
            self.batcher.load_state_dict(state["data"])
            self._say(f"resumed from {resume_from} at step {self.step}")
        n_params = sum(p.numel() for p in self.model.parameters())
        self._say(f"model: {cfg.model} ({n_params:,} parameters), vocab "
                  f"{src_tok.vocab_size}/{tgt_tok.vocab_size}, device {self.device}, "
                  f"world size {self.dist.world_size}")

    # -------------------------------------------------------------- helpers
    def _say(self, msg: str) -> None:
        if self.dist.is_main and self.log is not None:
            self.log(msg)

    @staticmethod
    def _seed_everything(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def _autocast(self):
        if not self.cfg.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _write_metrics(self, record: dict) -> None:
        if not self.dist.is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with (self.out_dir / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")

    def _config_dict(self) -> dict:
        import dataclasses

        return {"train": self.cfg.to_dict(), "model_class": self.cfg.model,
                "model": dataclasses.asdict(self.model_config)}

    def save(self) -> Path | None:
        """Write a checkpoint (rank 0 only) at the current step."""
        if not self.dist.is_main or self._saved_step == self.step:
            return None
        self._saved_step = self.step
        state = {"step": self.step, "data": self.batcher.state_dict(),
                 "train_seconds": self.train_seconds}
        return save_checkpoint(self.ckpt_dir, model=self.model, optimizer=self.optimizer,
                               scheduler=self.scheduler, config=self._config_dict(),
                               train_state=state, tokenizer=self.tokenizers,
                               keep_last=self.cfg.keep_last)

    def _done(self, start_time: float) -> bool:
        c = self.cfg
        if c.max_steps is not None and self.step >= c.max_steps:
            return True
        if c.epochs is not None and self.batcher.epoch >= c.epochs:
            return True
        if c.time_limit is not None and self.train_seconds + (time.time() - start_time) \
                >= c.time_limit:
            return True
        return False

    def _all_reduce(self, *values: float) -> list[float]:
        if self.dist.world_size == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def _time_up_everywhere(self, start: float) -> bool:
        done = self._done(start)
        if self.dist.world_size > 1:  # ranks must agree, or one would hang in all-reduce
            flag = torch.tensor([1.0 if done else 0.0], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            done = bool(flag.item() > 0)
        return done

    # ------------------------------------------------------------ one step
    def train_step(self, batches) -> dict:
        """One optimizer step over ``accum_steps`` global micro-batches."""
        c, model = self.cfg, self.train_model
        model.train()
        total_tokens = sum(b.global_num_tokens for b in batches)
        loss_sum = nll_sum = 0.0
        for i, global_batch in enumerate(batches):
            b = shard_batch(global_batch, self.dist.rank, self.dist.world_size) \
                if self.dist.world_size > 1 else global_batch
            b = b.to(self.device)
            last = i == len(batches) - 1
            sync = contextlib.nullcontext() if (last or self.dist.world_size == 1) \
                else model.no_sync()
            with sync:
                with self._autocast():
                    logits = model(b.src, b.tgt_in, b.src_valid_lens, b.tgt_valid_lens,
                                   only_valid=True)  # (n_valid, V)
                loss, nll, _ = smoothed_loss(logits, valid_targets(b),
                                             epsilon=c.label_smoothing)
                # DDP averages gradients over ranks: scale so the result is a sum
                (loss * self.dist.world_size / total_tokens).backward()
            loss_sum += float(loss.detach())
            nll_sum += float(nll)
        grad_norm = None
        if c.clip_norm is not None:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                                             c.clip_norm))
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        loss_sum, nll_sum = self._all_reduce(loss_sum, nll_sum)
        return {"loss": loss_sum / total_tokens, "nll": nll_sum / total_tokens,
                "tokens": total_tokens, "lr": lr, "grad_norm": grad_norm}

    # ------------------------------------------------------------ the loop
    def fit(self, *, on_step=None) -> dict:
        """Train until a stop condition; returns the last metrics record.

        ``on_step(trainer, record)`` is called after every step (tests use it
        to stop a run abruptly).
        """
        c = self.cfg
        start = time.time()
        bar = None
        if c.progress and self.dist.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=c.max_steps, initial=self.step, unit="step", dynamic_ncols=True,
                       disable=None)
        window = {"loss": 0.0, "nll": 0.0, "tokens": 0, "t0": time.time()}
        record: dict = {}
        pending = []
        try:
            while not self._time_up_everywhere(start):
                epoch_before = self.batcher.epoch
                for batch in self.batcher:
                    pending.append(batch)
                    if len(pending) < c.accum_steps:
                        continue
                    out = self.train_step(pending)
                    pending = []
                    window["loss"] += out["loss"] * out["tokens"]
                    window["nll"] += out["nll"] * out["tokens"]
                    window["tokens"] += out["tokens"]
                    if bar is not None:
                        el = max(1e-9, time.time() - window["t0"])
                        bar.set_postfix(loss=f"{out['loss']:.3f}",
                                        tok_s=f"{window['tokens'] / el:,.0f}")
                        bar.update(1)
                    if self.step % c.log_every == 0:
                        el = max(1e-9, time.time() - window["t0"])
                        nll = window["nll"] / max(1, window["tokens"])
                        record = {"step": self.step, "epoch": self.batcher.epoch,
                                  "loss": window["loss"] / max(1, window["tokens"]),
                                  "nll": nll, "ppl": math.exp(min(nll, 50.0)),
                                  "lr": out["lr"], "tokens_per_s": window["tokens"] / el,
                                  "grad_norm": out["grad_norm"],
                                  "elapsed_s": self.train_seconds + time.time() - start}
                        self._write_metrics(record)
                        window = {"loss": 0.0, "nll": 0.0, "tokens": 0, "t0": time.time()}
                    if c.eval_every and self.step % c.eval_every == 0:
                        self._write_metrics({"step": self.step, **self.evaluate()})
                    if c.checkpoint_every and self.step % c.checkpoint_every == 0:
                        self.train_seconds += time.time() - start
                        start = time.time()
                        self.save()
                    if on_step is not None:
                        on_step(self, out)
                    if self._time_up_everywhere(start):
                        break
                if self.batcher.epoch == epoch_before and not len(self.batcher):
                    break  # no data at all
        finally:
            if bar is not None:
                bar.close()
        self.train_seconds += time.time() - start
        final = {"step": self.step, **self.evaluate()}
        self._write_metrics(final)
        self.save()
        return {**record, **final}

    # ---------------------------------------------------------- validation
    @torch.no_grad()
    def translate(self, sentences: list[str], *, beam_size: int | None = None,
                  max_len: int | None = None) -> list[str]:
        from ..decode.search import beam_search, greedy_search

        k = beam_size or self.cfg.beam_size
        return translate_sentences(self.model, self.tokenizers, sentences, beam_size=k,
                                   max_len=max_len or self.cfg.max_len, device=self.device,
                                   greedy=greedy_search, beam=beam_search)

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Validation loss/perplexity on all validation pairs (teacher forcing), and
        BLEU (or exact match for the date task) on the first ``eval_sentences``."""
        if not self.valid_pairs:
            return {}
        model = self.model
        model.eval()
        if self._valid_batches is None:  # tokenized and batched once per run
            src_tok, tgt_tok = self.tokenizers.src, self.tokenizers.tgt
            examples = [(src_tok.encode(s), tgt_tok.encode(t)) for s, t in self.valid_pairs]
            self._valid_batches = list(BucketBatcher(examples, BatchingConfig(
                max_tokens=self.cfg.max_tokens, max_len=self.cfg.max_len,
                shuffle=False)).batches_for_epoch(0))
        loss_sum = nll_sum = 0.0
        tokens = 0
        for b in self._valid_batches:
            b = b.to(self.device)
            with self._autocast():
                logits = model(b.src, b.tgt_in, b.src_valid_lens, b.tgt_valid_lens,
                               only_valid=True)  # (n_valid, V)
            loss, nll, n = smoothed_loss(logits, valid_targets(b),
                                         epsilon=self.cfg.label_smoothing)
            loss_sum += float(loss)
            nll_sum += float(nll)
            tokens += n
        out = {"val_loss": loss_sum / max(1, tokens),
               "val_ppl": math.exp(min(50.0, nll_sum / max(1, tokens)))}
        if not self.dist.is_main:
            return out
        subset = self.valid_pairs[: self.cfg.eval_sentences]
        hyps = self.translate([s for s, _ in subset])
        refs = [t for _, t in subset]
        if self.cfg.data == "dates":
            out["val_exact_match"] = sum(h == r for h, r in zip(hyps, refs)) / len(refs)
        else:
            from ..eval.bleu import corpus_bleu

            out["val_bleu"] = corpus_bleu(hyps, refs).score
        return out


def translate_sentences(model, tokenizers: TokenizerPair, sentences: list[str], *,
                        beam_size: int = 1, max_len: int = 100, device=None,
                        batch_size: int = 64, alpha: float = 0.6, greedy=None,
                        beam=None) -> list[str]:
    """Translate ``sentences`` with greedy (``beam_size=1``) or beam search."""
    from ..decode.search import beam_search, greedy_search

    greedy = greedy or greedy_search
    beam = beam or beam_search
    device = device or next(model.parameters()).device
    model.eval()
    src_tok, tgt_tok = tokenizers.src, tokenizers.tgt
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    out: list[str | None] = [None] * len(sentences)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        ids = [src_tok.encode(sentences[i])[: max_len] + [EOS_ID] for i in idx]
        lens = torch.tensor([len(x) for x in ids], device=device)
        src = torch.full((len(ids), int(lens.max())), PAD_ID, dtype=torch.long, device=device)
        for r, x in enumerate(ids):
            src[r, : len(x)] = torch.tensor(x, device=device)
        # targets may be longer than sources (e.g. dates: "19980303" → "1998-03-03")
        limit = max_len + 10
        if beam_size == 1:
            res = greedy(model, src, lens, bos_id=BOS_ID, eos_id=EOS_ID, max_len=limit)
        else:
            res = beam(model, src, lens, bos_id=BOS_ID, eos_id=EOS_ID, beam_size=beam_size,
                       max_len=limit, alpha=alpha)
        for i, toks in zip(idx, res):
            out[i] = tgt_tok.decode(toks)
    return out  # type: ignore[return-value]
