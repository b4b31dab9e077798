"""The training loop: steps, metrics, validation and checkpoints.

One :class:`Trainer` serves the Transformer and the Bahdanau model alike
(teacher forcing: the decoder reads the gold target shifted right), on one
process or many (``torchrun``: DistributedDataParallel, gloo on CPU, nccl on
GPU; each rank takes its share of every global batch; only rank 0 writes).
Set-up (data, tokenizers, model, optimizer, the resume check) is in
:mod:`attnkit.train.setup`.

Loss: token-level cross-entropy with label smoothing ε,
``(1 − ε)·(−log p(y)) + ε·mean_v(−log p(v))`` summed over real target tokens
and divided by the tokens of the *global* batch, so the gradient is the same
whether a batch is split over ranks or accumulation steps or not.

Resuming restores model, optimizer, schedule, data position and every RNG from
the latest checkpoint; a run stopped at any point and resumed ends with the
same parameters as one that was never stopped (CPU, same seed).

Metrics go to ``metrics.jsonl``; with ``[run] tensorboard`` rank 0 mirrors each record
as TensorBoard events (:mod:`attnkit.train.board`). A ``plateau`` schedule takes each
validation's score by the metric that ranks checkpoints (exact match for dates, BLEU
otherwise), rank 0's on every rank, and keeps its progress in the checkpoint.

Divergence: at the first step whose loss or gradient norm is not finite (on any
rank: both travel in the one all-reduce a step makes), or at a checkpoint whose
weights are not, every rank stops with :class:`~attnkit.train.step.TrainingDiverged`
before the step is applied or the checkpoint written, so the checkpoints on disk
stay finite and the run resumes from the last of them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist

from .._io import ensure_writable_dir
from ..data.batching import BatchingConfig, BucketBatcher, shard_batch
from ..decode.translator import positions_of, translate_sentences
from ..runs.container import first_non_finite
from ..runs.lock import RunLock
from ..runs.retention import record_best, save_checkpoint, trim_best
from ..runs.run import Run, open_latest_run, run_description
from ..runtime import choose_threads, held_threads, machine
from .board import FOLDER as BOARD_FOLDER
from .board import BoardMirror, require_tensorboard
from .config import TrainConfig
from .schedule import observe, rescale
from .setup import set_up
from .step import TrainingDiverged, batch_loss, lr_fault, step_fault

__all__ = ["MetricsWindow", "Trainer"]

#: the metrics that rank checkpoints, by data kind (higher is better)
RANKING_METRICS = ("val_exact_match", "val_bleu")


def ranking_score(scores: dict) -> tuple[str, float] | None:
    """``(metric, score)`` of a validation by the metric that ranks checkpoints, or
    ``None`` when it has none (a process other than the first does not decode)."""
    metric = next((m for m in RANKING_METRICS if scores.get(m) is not None), None)
    return None if metric is None else (metric, float(scores[metric]))


def _either(options: list[str]) -> str:
    """``"a, b or c"``."""
    return options[0] if len(options) == 1 else f"{', '.join(options[:-1])} or {options[-1]}"


class MetricsWindow:
    """Token-weighted loss and throughput since the last record."""

    def __init__(self) -> None:
        self.loss = self.nll = 0.0
        self.tokens = 0
        self.t0 = time.time()

    def add(self, out: dict) -> None:
        self.loss += out["loss"] * out["tokens"]
        self.nll += out["nll"] * out["tokens"]
        self.tokens += out["tokens"]

    def tokens_per_s(self) -> float:
        return self.tokens / max(1e-9, time.time() - self.t0)

    def record(self) -> dict:
        nll = self.nll / max(1, self.tokens)
        return {"loss": self.loss / max(1, self.tokens), "nll": nll,
                "ppl": math.exp(min(nll, 50.0)), "tokens_per_s": self.tokens_per_s()}


class Trainer:
    """Builds everything from a :class:`~attnkit.train.config.TrainConfig` and runs the loop.

    ``Trainer(cfg).fit()`` trains until ``max_steps`` / ``epochs`` /
    ``time_limit``; it resumes from ``out_dir/checkpoints`` if a checkpoint is
    there (refusing one whose settings differ, see
    :func:`attnkit.train.setup.check_resume`). Metrics are appended to
    ``out_dir/metrics.jsonl``.
    """

    def __init__(self, cfg: TrainConfig, *, log=print):
        self.cfg, self.log = cfg, log
        if cfg.run.tensorboard:
            require_tensorboard()  # before the run folder or any data is touched
        self._board: BoardMirror | None = None  # open while fit() runs (rank 0)
        # one writer per run folder (rank 0 writes; the lock is held until fit() ends)
        self._lock = (RunLock(cfg.run.out_dir, checkpoints="checkpoints")
                      if os.environ.get("RANK", "0") == "0" else None)
        # torch's thread count, held from here until close() (fit() ends with it)
        self._threads, self._threads_held = contextlib.ExitStack(), False
        try:
            self._hold()
            s = set_up(cfg, self.threads)
        except BaseException:
            self.close()
            raise
        self.dist, self.device, self.tokenizers = s.dist, s.device, s.tokenizers
        self.batcher, self.valid_pairs = s.batcher, s.valid_pairs
        self.model, self.model_config = s.model, s.model_config
        self.optimizer, self.scheduler = s.optimizer, s.scheduler
        self.precision, self._threads_checked = s.precision, time.time()
        self.out_dir = Path(cfg.run.out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self._say(s.report)
        self.train_model = self.model
        if self.dist.world_size > 1:
            self.train_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda"
                else None)
        self.step = 0
        self.stopped_because: str | None = None
        self._valid_batches = None
        self._saved_step = -1
        self.train_seconds = 0.0
        self.train_tokens = 0  # target tokens trained on (<eos> included), all steps
        # the best validation score so far, its step, validations since; the last validated step
        self.validation = {"best_score": None, "best_step": None, "since_best": 0, "step": -1}
        if s.resume_from is not None:
            self._resume(s.resume_from)
        self.best: list[dict] = []  # best.json: the checkpoints kept for their scores
        if self.dist.is_main:
            self.best = trim_best(self.ckpt_dir, keep_best=cfg.run.keep_best,
                                  last_step=self.step)
        n_params = sum(p.numel() for p in self.model.parameters())
        self._say(f"model: {cfg.model.preset} ({n_params:,} parameters), vocab "
                  f"{self.tokenizers.src.vocab_size}/{self.tokenizers.tgt.vocab_size}, "
                  f"device {self.device}, world size {self.dist.world_size}")

    def _hold(self) -> None:
        """Take torch's thread count (:func:`attnkit.runtime.held_threads`) and the run
        folder's lock, unless held already; :meth:`close` gives both back."""
        if not self._threads_held:
            self.threads = self._threads.enter_context(held_threads(self.cfg.run.threads))
            self._threads_held = True
        if self._lock is None or self._lock.held:
            return
        ensure_writable_dir(self.cfg.run.out_dir, "out_dir")
        if self.cfg.run.tensorboard:  # a file or a read-only folder there: said before a step
            ensure_writable_dir(Path(self.cfg.run.out_dir) / BOARD_FOLDER, "tensorboard")
        self._lock.acquire()
        stale = self._lock.stale_holder
        if stale and self.log is not None:
            self.log(f"took over the lock of {self.cfg.run.out_dir} left by pid "
                     f"{stale.get('pid')}, which ended without releasing it")

    def close(self) -> None:
        """Release the run folder and give torch's thread count back as it was before
        the trainer was made (``fit`` does this when it ends; a later ``fit`` takes both
        again)."""
        self._threads.close()
        self._threads_held = False
        if self._board is not None:  # its events on disk at every end of fit()
            self._board.close()
            self._board = None
        if self._lock is not None:
            self._lock.release()

    def _resume(self, run: Run) -> None:
        info = run.restore(self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                           restore_rng=True)
        state = info["train_state"]
        self.step = self._saved_step = state["step"]
        self.train_seconds = state.get("train_seconds", 0.0)
        self.train_tokens = state.get("train_tokens", 0)
        self.validation.update(state.get("validation", {}))  # absent before patience/keep_best
        self.batcher.load_state_dict(state["data"])
        self._say(f"resumed from {run.path} at step {self.step}")
        before = rescale(self.scheduler, self.cfg.optim.lr_scale)  # the schedule kept its own
        if before is not None:
            self._say(f"lr_scale changed: {before:g} -> {self.cfg.optim.lr_scale:g} from "
                      f"step {self.step + 1} on")
        horizon = getattr(self.scheduler.lr_lambdas[0], "total_steps", None)
        if horizon is not None and horizon != (self.cfg.optim.total_steps
                                               or self.cfg.run.max_steps):
            self._say(f"the cosine schedule keeps the horizon it started with: it decays "
                      f"until step {horizon}, then stays at min_lr")

    # -------------------------------------------------------------- helpers
    def _say(self, msg: str) -> None:
        if self.dist.is_main and self.log is not None:
            self.log(msg)

    def _autocast(self):
        if not self.precision.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _write_metrics(self, record: dict) -> None:
        if not self.dist.is_main:
            return
        path = self.out_dir / "metrics.jsonl"
        try:
            with path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:
            raise OSError(e.errno, f"cannot write {path}: {e.strerror or e}") from None
        if self._board is not None:
            self._board.add(record)

    def save(self) -> Path | None:
        """Write a checkpoint (rank 0 only) at the current step; every rank stops first
        when the weights are not finite (they are the same on every rank)."""
        bad = first_non_finite(self.model.state_dict())
        if bad is not None:
            raise self._diverged(self.step, f"the weights are not finite ({bad})")
        if not self.dist.is_main or self._saved_step == self.step:
            return None
        self._saved_step = self.step
        state = {"step": self.step, "data": self.batcher.state_dict(),
                 "train_seconds": self.train_seconds, "train_tokens": self.train_tokens,
                 "validation": dict(self.validation), "world_size": self.dist.world_size,
                 "batch_multiple": self.batcher.config.batch_multiple}  # see set_up
        config = run_description(model_config=self.model_config,
                                 tokenizer=self.tokenizers.describe(), train=self.cfg.to_dict())
        config["runtime"] = {**self.precision.to_dict(), "threads": self.threads.count,
                             "threads_reason": self.threads.reason, **machine()}
        if self._board is not None:  # the events up to a checkpoint are on disk with it
            self._board.flush()
        return save_checkpoint(self.ckpt_dir, model=self.model, optimizer=self.optimizer,
                               scheduler=self.scheduler, config=config, train_state=state,
                               tokenizer=self.tokenizers, keep_last=self.cfg.run.keep_last)

    def _done(self, start_time: float) -> bool:
        """Whether a stop condition holds; ``stopped_because`` says which."""
        r = self.cfg.run
        if self.stopped_because is None:
            if r.max_steps is not None and self.step >= r.max_steps:
                self.stopped_because = f"max_steps = {r.max_steps} reached"
            elif r.epochs is not None and self.batcher.epoch >= r.epochs:
                self.stopped_because = f"epochs = {r.epochs} done"
            elif r.time_limit is not None and \
                    self.train_seconds + (time.time() - start_time) >= r.time_limit:
                self.stopped_because = f"time_limit = {r.time_limit:g} s reached"
        return self.stopped_because is not None

    def _diverged(self, step: int, what: str, *, lr_only: bool = False) -> TrainingDiverged:
        """The one-line stop at ``step``: what is not finite (or, ``lr_only``, the learning
        rate that cannot be), what to change, and the checkpoint to resume from. Only
        ``lr_scale`` and ``bf16`` may change on resume; the rest takes a new run."""
        o = self.cfg.optim
        resumable = [f"a lower --lr-scale (now {o.lr_scale:g})"]
        resumable += ["--bf16 false"] if self.precision.bf16 and not lr_only else []
        clip = "none" if o.clip_norm is None else f"{o.clip_norm:g}"
        anew = [] if lr_only else [
            f"a longer --warmup (now {o.warmup})",
            f"--clip-norm 1 (now {clip})" if clip in ("none", "inf")
            else f"a lower --clip-norm (now {clip})"]
        anew += [] if o.lr is None else [f"a lower --lr (now {o.lr:g})"]  # a peak rate
        last, _ = open_latest_run(self.ckpt_dir)  # every rank can tell; none was written since
        if last is None:
            advice = (f"no checkpoint was written before it; train again with "
                      f"{_either(resumable + anew)}")
        else:
            advice = (f"the last finite checkpoint, {last.path}, resumes with "
                      f"{_either(resumable)}"
                      + (f"; {_either(anew)} needs a new run (--out-dir)" if anew else ""))
        return TrainingDiverged(f"training stopped at step {step}: {what}; {advice}")

    def _step_totals(self, sums: torch.Tensor, grad_norm: torch.Tensor) -> list[float]:
        """``[loss sum, nll sum, gradient norm]`` of a step over all ranks, in one
        all-reduce and one device sync. The norm is rank 0's (the others add it times 0),
        and NaN on every rank when it is not finite on any (inf or NaN times 0 is NaN),
        so all ranks judge the step alike."""
        weight = 1.0 if self.dist.is_main else 0.0
        t = torch.cat([sums, grad_norm.detach().to(sums).reshape(1) * weight])
        if self.dist.world_size > 1:
            dist.all_reduce(t)
        return t.tolist()

    def _grad_norm(self) -> torch.Tensor:
        """The global norm of the gradients, before clipping them to ``clip_norm`` (when
        set): computed once a step, for clipping and for the divergence check."""
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.cfg.optim.clip_norm is None:
            return torch.nn.utils.get_total_norm([p.grad for p in params])
        return torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.clip_norm)

    def _time_up_everywhere(self, start: float) -> bool:
        done = self._done(start)
        if self.dist.world_size > 1:  # ranks must agree, or one would hang in all-reduce
            flag = torch.tensor([1.0 if done else 0.0], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            done = bool(flag.item() > 0)
        return done

    # ------------------------------------------------------------ one step
    def _micro_step(self, global_batch, total_tokens: int, last: bool) -> torch.Tensor:
        """Forward and backward of one global micro-batch (this rank's share); returns
        its ``(loss sum, nll sum)`` in float64, on the device (not synced)."""
        model, world = self.train_model, self.dist.world_size
        b = shard_batch(global_batch, self.dist.rank, world) if world > 1 else global_batch
        b = b.to(self.device)
        sync = contextlib.nullcontext() if (last or world == 1) else model.no_sync()
        with sync:
            loss, nll, _ = batch_loss(model, b, epsilon=self.cfg.optim.label_smoothing,
                                      autocast=self._autocast)
            # DDP averages gradients over ranks: scale so the result is a sum
            (loss * world / total_tokens).backward()
        return torch.stack([loss.detach(), nll.detach()]).double()

    def train_step(self, batches) -> dict:
        """One optimizer step over ``accum_steps`` global micro-batches."""
        self.train_model.train()
        total_tokens = sum(b.global_num_tokens for b in batches)
        sums = sum(self._micro_step(b, total_tokens, i == len(batches) - 1)
                   for i, b in enumerate(batches))
        loss_sum, nll_sum, grad_norm = self._step_totals(sums, self._grad_norm())
        lr = self.optimizer.param_groups[0]["lr"]
        fault, too_large = step_fault(loss_sum, grad_norm), lr_fault(lr, self.cfg.optim.beta1)
        if fault or too_large:  # before the optimizer: the weights stay those of the last step
            self.optimizer.zero_grad(set_to_none=True)
            raise self._diverged(self.step + 1, fault or too_large, lr_only=not fault)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.train_tokens += total_tokens
        return {"loss": loss_sum / total_tokens, "nll": nll_sum / total_tokens,
                "tokens": total_tokens, "lr": lr, "grad_norm": grad_norm}

    # ------------------------------------------------------------ the loop
    def _every(self, n: int) -> bool:
        return bool(n) and self.step % n == 0

    def _after_step(self, out: dict, window: MetricsWindow, start: float) -> tuple:
        """Logging, validation and checkpoints after a step, each at its own cadence.

        Returns ``(window, record, start)``: a new window after a record, and a new
        start time after a checkpoint (whose time is added to ``train_seconds``).
        """
        r, record = self.cfg.run, None
        window.add(out)
        self._recheck_threads()
        if self._every(r.log_every):
            record = {"step": self.step, "epoch": self.batcher.epoch, **window.record(),
                      "lr": out["lr"], "grad_norm": out["grad_norm"],
                      "elapsed_s": self.train_seconds + time.time() - start,
                      "train_tokens": self.train_tokens}
            self._write_metrics(record)
            window = MetricsWindow()
        best = None
        if self._every(r.eval_every):
            scores = self.evaluate()
            self._write_metrics({"step": self.step, **scores})
            best = self._note_validation(scores)
            self._follow_plateau(scores)
        if self._every(r.checkpoint_every) or best is not None:
            self.train_seconds += time.time() - start
            start = time.time()
            self.save()
        if best is not None:
            self._keep_best(best)
        return window, record, start

    def _note_validation(self, scores: dict, *, final: bool = False) -> dict | None:
        """Follow the best validation score; set ``stopped_because`` when it reaches
        ``stop_at`` or has not improved in ``patience`` validations (not at the ``final``
        one). Returns this step's ``best.json`` entry when its checkpoint is to be kept
        among the ``keep_best`` best (save it, then :meth:`_keep_best`), else ``None``."""
        r, v, ranked = self.cfg.run, self.validation, ranking_score(scores)
        if ranked is None or v["step"] == self.step or not math.isfinite(ranked[1]):
            return None  # no score, this step's again, or one no ranking can place
        (metric, score), v["step"] = ranked, self.step
        if v["best_score"] is None or score > v["best_score"]:
            v.update(best_score=score, best_step=self.step, since_best=0)
        else:
            v["since_best"] += 1
        if not final and r.stop_at is not None and score >= r.stop_at:
            self.stopped_because = f"validation score {score:.3f} >= stop_at {r.stop_at}"
        elif not final and r.patience is not None and v["since_best"] >= r.patience:
            self.stopped_because = (f"no better validation score in {r.patience} validations "
                                    f"(best {v['best_score']:.3f} at step {v['best_step']})")
        entry = {"step": self.step, "score": score, "metric": metric}
        return entry if self._among_best(entry) else None

    def _follow_plateau(self, scores: dict) -> None:
        """Give a ``plateau`` schedule the score of this validation: rank 0's (the one
        that decodes) on every rank, so all of them keep one learning rate."""
        if self.cfg.optim.schedule != "plateau":
            return
        ranked = ranking_score(scores)
        score = math.nan if ranked is None else ranked[1]
        if self.dist.world_size > 1:
            t = torch.tensor([score], dtype=torch.float64, device=self.device)
            dist.broadcast(t, 0)
            score = float(t.item())
        rate = observe(self.scheduler, score, self.step)
        n = self.cfg.optim.plateau_patience
        if rate is not None:
            self._say(f"no better validation score in {n} validation{'s' * (n > 1)}: "
                      f"learning rate {rate:.3g} from step {self.step + 1} on")

    def _among_best(self, entry: dict) -> bool:
        """Whether ``entry`` belongs among the ``keep_best`` best (rank 0 only)."""
        k = self.cfg.run.keep_best
        if not (k and self.dist.is_main) or any(e["step"] == entry["step"] for e in self.best):
            return False
        return len(self.best) < k or entry["score"] > min(e["score"] for e in self.best[:k])

    def _keep_best(self, entry: dict) -> None:
        """List this step's checkpoint (saved) in ``best.json``; drop the one it displaces."""
        self.best = record_best(self.ckpt_dir, entry, keep_best=self.cfg.run.keep_best,
                                keep_last=self.cfg.run.keep_last)

    def _recheck_threads(self, every_s: float = 30.0) -> None:
        """With ``threads = "auto"``, follow the load of the machine while training."""
        if self.cfg.run.threads != "auto" or time.time() - self._threads_checked < every_s:
            return
        self._threads_checked = time.time()
        before, chosen = self.threads.count, choose_threads("auto")
        if chosen.count != before:  # hold the new count; close() still restores the caller's
            self._threads.close()
            self._threads.enter_context(held_threads(chosen))
            self._say(f"threads: {before} -> {chosen.count} ({chosen.reason})")
        self.threads = chosen

    def _progress_bar(self):
        if not (self.cfg.run.progress and self.dist.is_main):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.cfg.run.max_steps, initial=self.step, unit="step",
                    dynamic_ncols=True, disable=None)

    def fit(self, *, on_step=None) -> dict:
        """Train until a stop condition; returns the last metrics record.

        ``on_step(trainer, record)`` is called after every step (tests use it
        to stop a run abruptly).
        """
        self._hold()
        try:
            if self.cfg.run.tensorboard and self.dist.is_main:
                self._board = BoardMirror(self.out_dir, first_step=self.step + 1)
            return self._fit(on_step)
        finally:
            self.close()

    def _fit(self, on_step) -> dict:
        start, window, record, pending = time.time(), MetricsWindow(), {}, []
        self.stopped_because = None
        bar = self._progress_bar()
        try:
            while not self._time_up_everywhere(start):
                epoch_before = self.batcher.epoch
                if note := self.batcher.resampled_report(epoch_before):
                    self._say(note)
                for batch in self.batcher:
                    pending.append(batch)
                    if len(pending) < self.cfg.optim.accum_steps:
                        continue
                    out, pending = self.train_step(pending), []
                    if bar is not None:
                        bar.set_postfix(loss=f"{out['loss']:.3f}",
                                        tok_s=f"{window.tokens_per_s():,.0f}")
                        bar.update(1)
                    window, new_record, start = self._after_step(out, window, start)
                    record = new_record or record
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
        best = self._note_validation(final, final=True)
        self._follow_plateau(final)
        self.save()
        if best is not None:
            self._keep_best(best)
        return {**record, **final}

    # ---------------------------------------------------------- validation
    @torch.no_grad()
    def translate(self, sentences: list[str], *, beam_size: int | None = None,
                  max_output_len: int | None = None) -> list[str]:
        return translate_sentences(self.model, self.tokenizers, sentences,
                                   beam_size=beam_size or self.cfg.run.beam_size,
                                   max_output_len=max_output_len, device=self.device,
                                   positions=positions_of(self.model_config))

    def _validation_batches(self) -> list:
        if self._valid_batches is None:  # tokenized and batched once per run
            src_tok, tgt_tok = self.tokenizers.src, self.tokenizers.tgt
            examples = [(src_tok.encode(s), tgt_tok.encode(t)) for s, t in self.valid_pairs]
            self._valid_batches = list(BucketBatcher(examples, BatchingConfig(
                max_tokens=self.cfg.optim.max_tokens,
                max_sentence_tokens=self.cfg.data.max_sentence_tokens,
                shuffle=False)).batches_for_epoch(0))
        return self._valid_batches

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Validation loss/perplexity on all validation pairs (teacher forcing), and
        BLEU (or exact match for the date task) on the first ``eval_sentences``."""
        if not self.valid_pairs:
            return {}
        self.model.eval()
        loss_sum = nll_sum = 0.0
        tokens = 0
        for b in self._validation_batches():
            b = b.to(self.device)
            loss, nll, n = batch_loss(self.model, b, epsilon=self.cfg.optim.label_smoothing,
                                      autocast=self._autocast)
            loss_sum, nll_sum, tokens = loss_sum + float(loss), nll_sum + float(nll), tokens + n
        out = {"val_loss": loss_sum / max(1, tokens),
               "val_ppl": math.exp(min(50.0, nll_sum / max(1, tokens)))}
        if self.dist.is_main:
            out.update(self._decode_metrics())
        return out

    def _decode_metrics(self) -> dict:
        subset = self.valid_pairs[: self.cfg.run.eval_sentences]
        hyps = self.translate([s for s, _ in subset])
        refs = [t for _, t in subset]
        if self.cfg.data.kind == "dates":
            return {"val_exact_match": sum(h == r for h, r in zip(hyps, refs)) / len(refs)}
        from ..eval.bleu import corpus_bleu

        return {"val_bleu": corpus_bleu(hyps, refs).score}
