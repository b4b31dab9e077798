"""Setting up a training run: processes, device, data, tokenizers, model, optimizer.

Each piece is a small function of the :class:`~attnkit.train.config.TrainConfig`;
:func:`set_up` calls them in order and, when the run folder holds a checkpoint,
first checks that the checkpoint's run may be resumed with this config.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..data.batching import BatchingConfig, BucketBatcher
from ..data.corpus import load_pairs
from ..data.tokenizer import SampledPairs, TokenizerPair
from ..models.build import build_model
from ..runs.container import unlisted_files
from ..runs.retention import clean_leftovers
from ..runs.run import RUN_FORMAT_VERSION, Run, open_latest_run
from ..runtime import (
    Precision,
    Threads,
    cached_measure,
    choose_precision,
    substituted_cpu_bf16,
)
from .config import TrainConfig, model_differences, resume_differences
from .schedule import noam_scheduler, warmup_scheduler
from .step import batch_loss

__all__ = ["DistInfo", "Setup", "build_optimizer", "check_resume", "fused_where_supported",
           "init_distributed", "resolve_device", "set_up"]


@dataclass
class DistInfo:
    """This process's place among the training processes (``torchrun``)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Join the process group when started by ``torchrun`` (``WORLD_SIZE > 1``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    wants_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if not dist.is_initialized():
        dist.init_process_group("nccl" if wants_cuda else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(),
                    int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N; got {name!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} asked for, but CUDA is not available")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_resume(cfg: TrainConfig, run: Run) -> Run:
    """``run`` (opened, e.g. by :func:`attnkit.runs.run.open_latest_run`), if ``cfg`` may
    resume it.

    Raises:
        ValueError: the stored run has another run format, or differs from
            ``cfg`` in a field that may not change on resume (the message lists
            each field with the stored and the given value).
    """
    if run.train is None or run.format_version != RUN_FORMAT_VERSION:
        raise ValueError(
            f"cannot resume {run.path}: it was written in run format_version "
            f"{run.format_version}, this attnkit resumes format_version {RUN_FORMAT_VERSION} "
            "(it still loads for translate and evaluate); start a new run in another "
            "directory with --out-dir")
    m = run.model
    given = cfg.model.config(m.src_vocab_size, m.tgt_vocab_size,
                             shared=bool(run.tokenizer.get("shared")))
    diffs = resume_differences(run.train, cfg) + model_differences(m, given)
    if diffs:
        raise ValueError(
            f"cannot resume {run.path}: the run was trained with other settings ("
            + "; ".join(diffs)
            + "); resume with the stored settings, or start a new run in another directory "
              "with --out-dir")
    return run


#: devices whose parameters torch's fused Adam/AdamW kernel updates
_FUSED_DEVICES = ("cpu", "cuda")


def fused_where_supported(model: torch.nn.Module) -> dict:
    """``{"fused": True}`` when every parameter of ``model`` is a floating-point tensor on a
    device torch's fused Adam runs on, else ``{}`` (torch's default implementation).

    Why: on the CPU the default is a loop over the parameters, several elementwise calls
    each; the fused kernel does one pass per tensor — 3x faster on the shipped config's
    130 tensors here (BENCHMARKS.md, "Where a training step's time goes"). Its updates
    equal the loop's to float32 rounding, not bit for bit; a run keeps the implementation
    it was started with (a checkpoint's optimizer state names it), so resuming is exact.
    """
    params = list(model.parameters())
    ok = bool(params) and all(p.is_floating_point() and p.device.type in _FUSED_DEVICES
                              for p in params)
    return {"fused": True} if ok else {}


def _new_versions(optimizer: torch.optim.Optimizer, *_) -> None:
    """Give every parameter a fused step wrote a new version: the fused kernel writes
    them without one, and what is kept on a weight's version (the fused projections of
    :class:`attnkit.nn.MultiHeadAttention`) must see the change."""
    for group in optimizer.param_groups:
        if group.get("fused"):
            for p in group["params"]:
                torch.autograd.graph.increment_version(p)


def build_optimizer(cfg: TrainConfig, model: torch.nn.Module, num_hiddens: int):
    """Adam or AdamW with the run's schedule (``lr`` = 1 times the schedule's rate): the
    paper's by default, else one with a peak rate (see :mod:`attnkit.train.schedule`)."""
    o = cfg.optim
    opt_cls = torch.optim.AdamW if o.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_cls(model.parameters(), lr=1.0, betas=(o.beta1, o.beta2), eps=o.eps,
                        weight_decay=o.weight_decay, **fused_where_supported(model))
    optimizer.register_step_post_hook(_new_versions)
    if o.schedule == "noam":
        scheduler = noam_scheduler(optimizer, d_model=num_hiddens, warmup=o.warmup,
                                   scale=o.lr_scale)
        return optimizer, scheduler
    params = {"warmup_init_lr": o.warmup_init_lr}
    if o.schedule == "cosine":  # the horizon: total_steps, else the run's max_steps
        params.update(min_lr=o.min_lr, total_steps=o.total_steps or cfg.run.max_steps)
    elif o.schedule == "plateau":
        params.update(min_lr=o.min_lr, decrease_factor=o.decrease_factor,
                      patience=o.plateau_patience)
    scheduler = warmup_scheduler(optimizer, o.schedule, lr=o.lr, warmup=o.warmup,
                                 scale=o.lr_scale, **params)
    return optimizer, scheduler


#: bf16 autocast is kept by ``auto`` on a CPU only where a training step of the run's own
#: model measures at least this much faster than fp32's
STEP_GAIN = 1.05


def confirm_bf16_by_steps(precision: Precision, cfg: TrainConfig, model_config,
                          batcher: BucketBatcher) -> Precision:
    """``precision`` (bf16 chosen by ``auto`` for its fast matrix products), kept only where
    a training step of this model in bf16 autocast also measures faster than in fp32
    (:data:`STEP_GAIN`): a small model's products are a small share of its step, and
    autocast's casts can cost more than they save (the demo's d = 64 model trained at 0.56x
    fp32 in bf16 on a Xeon with AMX). Measured once per CPU, torch version, thread count,
    model sizes and batch budget (:func:`attnkit.runtime.cached_measure`), on a copy of the
    model and the run's first batches; torch's random state is left as it was."""
    what = (f"steps|{model_config!r}|{cfg.optim.max_tokens}|{cfg.run.backend}")
    ratio = cached_measure("bf16-steps.json", what,
                           lambda: _bf16_step_ratio(cfg, model_config, batcher))
    measured = f"a training step of this model measured {ratio:.2f}x fp32's speed in bf16"
    if ratio >= STEP_GAIN:
        return Precision(True, f"{precision.reason}; {measured}", precision.speed_ratio)
    return Precision(False, f"{precision.reason}, but {measured} (its products are too small "
                            "to repay autocast's casts)", precision.speed_ratio)


def _bf16_step_ratio(cfg: TrainConfig, model_config, batcher: BucketBatcher,
                     rounds: int = 3) -> float:
    """Process time of fp32 training steps over bf16 autocast ones on a throwaway copy of the
    model: the run's first two batches, one step each to warm up, then ``rounds`` rounds of
    both, alternating."""
    batches = list(itertools.islice(batcher.batches_for_epoch(0), 2))
    with torch.random.fork_rng(devices=[]):
        model = build_model(model_config, backend=cfg.run.backend)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-5,
                                     **fused_where_supported(model))

        def steps(bf16: bool) -> float:
            t0 = time.process_time()
            for b in batches:
                cast = ((lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16
                        else contextlib.nullcontext)
                loss, _, n = batch_loss(model.train(), b, epsilon=0.1, autocast=cast)
                (loss / max(1, n)).backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            return time.process_time() - t0

        steps(False), steps(True)  # warm-up
        seconds = {False: 0.0, True: 0.0}
        for r in range(rounds):
            for bf16 in ((False, True) if r % 2 == 0 else (True, False)):
                seconds[bf16] += steps(bf16)
    return seconds[False] / max(seconds[True], 1e-9)


@dataclass
class Setup:
    """Everything the training loop needs, built from a config."""

    dist: DistInfo
    device: torch.device
    tokenizers: TokenizerPair
    batcher: BucketBatcher
    valid_pairs: list
    model: torch.nn.Module
    model_config: object
    optimizer: torch.optim.Optimizer
    scheduler: object
    resume_from: Run | None  # the checkpoint to resume, opened and checked once
    report: str
    precision: Precision
    threads: Threads


def _resume_point(cfg: TrainConfig, is_main: bool) -> tuple[Run | None, list[str]]:
    """The run to resume, opened at its newest checkpoint that verifies (each checkpoint
    verified once) and checked by :func:`check_resume`, and notes on what was cleaned up
    or skipped on the way."""
    root = Path(cfg.run.out_dir) / "checkpoints"
    notes = []
    if is_main:  # the folder was checked writable (and locked) by the trainer
        notes += [f"removed {p}, left by an interrupted save" for p in clean_leftovers(root)]
    latest, skipped = open_latest_run(root, set_aside=is_main)
    if latest is None and skipped:
        raise ValueError(_nothing_verifies(root, skipped))
    notes += [f"skipped: {reason}" for reason in skipped]
    run = None if latest is None else check_resume(cfg, latest)
    if run is not None and (extra := unlisted_files(run.path)):
        notes.append(f"note: {run.path} holds {len(extra)} file(s) its manifest does not "
                     f"list, ignored: {', '.join(extra[:10])}{', ...' if len(extra) > 10 else ''}")
    return run, notes


_REASONS_SHOWN = 5  # of the checkpoints that fail, in the one line that refuses the run


def _nothing_verifies(root: Path, reasons: list[str]) -> str:
    """Why a run whose ``step-N`` entries all fail verification does not start: the
    progress they hold is never thrown away silently by starting again from step 0."""
    shown = "; ".join(reasons[:_REASONS_SHOWN]) + (
        f"; and {len(reasons) - _REASONS_SHOWN} more" if len(reasons) > _REASONS_SHOWN else "")
    return (f"cannot resume: none of the {len(reasons)} checkpoint(s) under {root} verifies "
            f"({shown}); nothing was moved or deleted. Repair them, or move them out of "
            f"{root} to train this run again from step 0, or start a new run in another "
            "directory with --out-dir")


def _batch_multiple(cfg: TrainConfig, resume_from: Run | None,
                    world_size: int) -> tuple[int, list[str]]:
    """Examples per global batch rounded to: ``batch_multiple``, else the multiple the
    resumed run was batched with (its number of processes then), else the number of
    processes. A run resumed by another number of processes so keeps its global
    batches, its data position and its gradients; and a note saying so."""
    if cfg.optim.batch_multiple is not None:
        return cfg.optim.batch_multiple, []
    state = resume_from.train_state if resume_from is not None else {}
    stored = state.get("world_size", world_size)  # absent before runs recorded it
    multiple = state.get("batch_multiple", world_size)
    if stored == world_size:
        return multiple, []
    return multiple, [f"resumed with world size {world_size} a run trained with world size "
                      f"{stored}: global batches stay those of the run (examples in "
                      f"multiples of {multiple}), each split over the {world_size} "
                      f"process{'es' if world_size > 1 else ''}"]


def _training_data(cfg: TrainConfig, resume_from: Run | None, world_size: int):
    """Training pairs -> tokenizers -> batches; an error when no batch can be made."""
    train_pairs, valid_pairs, report = load_pairs(cfg.data, seed=cfg.run.seed)
    if not train_pairs:
        raise ValueError(f"no training pair in the [data] of this run ({report}); check "
                         "the files and their format")
    t = cfg.tokenizer
    tokenizers = (TokenizerPair.load(resume_from.tokenizer_dir) if resume_from is not None
                  else TokenizerPair.train(t.kind, train_pairs, shared=t.shared_vocab,
                                           vocab_size=t.vocab_size, seed=cfg.run.seed))
    examples = [(tokenizers.src.encode(s), tokenizers.tgt.encode(t)) for s, t in train_pairs]
    multiple, notes = _batch_multiple(cfg, resume_from, world_size)
    # subword sampling: each epoch's segmentation is drawn when the epoch begins, the same
    # on every rank and after a resume (it depends on the seed and the epoch only)
    resample = (SampledPairs(tokenizers, train_pairs, alpha=t.sample_alpha, seed=cfg.run.seed)
                if t.sample_alpha else None)
    batcher = BucketBatcher(examples, BatchingConfig(
        max_tokens=cfg.optim.max_tokens, max_sentence_tokens=cfg.data.max_sentence_tokens,
        seed=cfg.run.seed, batch_multiple=multiple), resample=resample)
    if batcher.report.kept == 0:
        raise ValueError(
            f"no training example fits: {batcher.report.summary()}; raise "
            f"max_sentence_tokens (now {cfg.data.max_sentence_tokens}) or max_tokens (now "
            f"{cfg.optim.max_tokens})")
    sampling = ([f"subword sampling: alpha {t.sample_alpha:g}, training sentences segmented "
                 "anew each epoch (validation and translation are not)"] if resample else [])
    return tokenizers, batcher, valid_pairs, "\n".join(
        [*notes, report, f"batching: {batcher.report.summary()}", *sampling])


def set_up(cfg: TrainConfig, threads: Threads) -> Setup:
    """Build a run from ``cfg``, on the ``threads`` the caller holds torch's count at
    (the precision is chosen at that count). The run folder is checked writable,
    leftovers of interrupted saves are removed, and the newest checkpoint that verifies
    is checked for resuming — all before any data is read; its tokenizers are reused."""
    dist_info = init_distributed(cfg.run.device)
    device = resolve_device(cfg.run.device, dist_info.local_rank)
    precision = choose_precision(cfg.run.bf16, device)
    resume_from, notes = _resume_point(cfg, dist_info.is_main)
    seed_everything(cfg.run.seed)
    tokenizers, batcher, valid_pairs, report = _training_data(cfg, resume_from,
                                                              dist_info.world_size)
    if cfg.optim.schedule == "plateau" and not valid_pairs:
        raise ValueError("schedule = 'plateau' follows the validation score, and the [data] "
                         "of this run has no validation pairs; give it some (valid_path, "
                         "valid_size) or choose another schedule")
    model_config = cfg.model.config(tokenizers.src.vocab_size, tokenizers.tgt.vocab_size,
                                    shared=tokenizers.shared)
    model = build_model(model_config, backend=cfg.run.backend).to(device)
    optimizer, scheduler = build_optimizer(cfg, model, model_config.num_hiddens)
    if (cfg.run.bf16 == "auto" and precision.bf16 and device.type == "cpu"
            and dist_info.world_size == 1 and substituted_cpu_bf16() is None):
        precision = confirm_bf16_by_steps(precision, cfg, model_config, batcher)
    runtime = (f"precision: {'bf16 autocast' if precision.bf16 else 'fp32'} ({precision.reason})"
               f"; threads: {threads.count} ({threads.reason})")
    notes += [f"warning: {precision.warning}"] if precision.warning else []
    return Setup(dist_info, device, tokenizers, batcher, valid_pairs, model, model_config,
                 optimizer, scheduler, resume_from, "\n".join([*notes, report, runtime]),
                 precision, threads)
