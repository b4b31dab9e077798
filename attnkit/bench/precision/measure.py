"""How :mod:`attnkit.bench.precision` measures: two trainers of one config, the same batches,
rounds in alternation; :func:`run` returns a :class:`PrecisionResult`."""

from __future__ import annotations

import datetime as _dt
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ...train.config import TrainConfig
from ...train.trainer import Trainer
from ..report import section_markers
from ..toolkit import machine_info

__all__ = ["BF16_TARGET", "END", "FP32_FLOOR", "PrecisionResult", "START", "run"]

START, END = section_markers("precision-native")
BF16_TARGET = 1.8  # default precision / fp32 where the default is bf16
FP32_FLOOR = 0.95  # where the default is fp32 too: the same step, within one run's noise


@dataclass
class PrecisionResult:
    """Target tokens/s per round of each trainer (see :class:`attnkit.bench.report.SuiteResult`)."""

    config: str
    setting: str  # the config's bf16 setting ("auto", "true", "false")
    chosen_bf16: bool  # what it chose on this machine
    reason: str  # and why (the trainer's log line)
    rounds: dict[str, list[float]]  # "fp32" / "default" -> tokens/s of each round
    tokens: int  # target tokens per round
    batches: int
    threads: int  # torch threads each trainer held
    machine: dict[str, str]
    date: str
    markers: ClassVar[tuple[str, str]] = (START, END)

    @property
    def medians(self) -> dict[str, float]:
        return {k: statistics.median(v) for k, v in self.rounds.items()}

    @property
    def ratio(self) -> float:
        """Median tokens/s of the default precision over fp32's."""
        m = self.medians
        return m["default"] / m["fp32"]

    @property
    def target(self) -> float:
        return BF16_TARGET if self.chosen_bf16 else FP32_FLOOR

    def verdict(self) -> str:
        return "met" if self.ratio >= self.target else "NOT met"

    def summary(self) -> list[str]:
        m = self.medians
        default = "bf16 autocast" if self.chosen_bf16 else "fp32"
        return [f"bf16 = {self.setting!r} chose {default}: {self.reason}",
                f"{self.batches} batches ({self.tokens:,} target tokens) a round, "
                f"{self.threads} torch thread(s) per trainer",
                f"fp32     {m['fp32']:10,.0f} target tokens/s (median of "
                f"{len(self.rounds['fp32'])} rounds)",
                f"default  {m['default']:10,.0f} target tokens/s",
                f"ratio default / fp32: {self.ratio:.2f} (target >= {self.target}): "
                f"{self.verdict()}"]

    def markdown(self, command: str) -> str:
        info = self.machine
        default = "bf16 autocast" if self.chosen_bf16 else "fp32"
        cell = " · ".join
        return "\n".join([
            "## Training in the default precision against fp32",
            "",
            f"Date {self.date}; {info['cpu']}, ISA {info.get('isa', '?')}, native bf16: "
            f"{info.get('bf16_native', '?')}; {info['cores']} cores; {self.threads} torch "
            f"thread(s) per trainer; torch {info['torch']}.",
            f"Command: `{command}`.",
            "",
            f"Config `{self.config}` (`bf16 = {self.setting!r}`), two trainers in one process, "
            f"the same {self.batches} training batches ({self.tokens:,} target tokens) a round "
            "through each one's `train_step`, the two alternating and their order reversed "
            "every other round; tokens over process time.",
            "",
            "| precision | what it runs | target tokens/s (rounds) | median |",
            "|---|---|---|---:|",
            f"| `bf16 = false` | fp32 | {cell(f'{x:,.0f}' for x in self.rounds['fp32'])} | "
            f"{self.medians['fp32']:,.0f} |",
            f"| `bf16 = {self.setting!r}` (default) | {default}: {self.reason} | "
            f"{cell(f'{x:,.0f}' for x in self.rounds['default'])} | "
            f"{self.medians['default']:,.0f} |",
            "",
            f"**Default / fp32: {self.ratio:.2f}×** (target ≥ {self.target}× where the default "
            f"is {default}: {self.verdict()}).",
        ])


def _trainer(config: str, out_dir: Path, threads: int, **overrides) -> Trainer:
    cfg = TrainConfig.from_file(config, threads=threads, out_dir=str(out_dir),
                                checkpoint_every=0, eval_every=0, progress=False,
                                tensorboard=False, **overrides)
    return Trainer(cfg, log=lambda *_: None)


def run(*, config: str = "configs/multi30k-de-en.toml", threads: int = 1, rounds: int = 3,
        num_batches: int = 6) -> PrecisionResult:
    """Time ``rounds`` rounds of ``num_batches`` training steps of each trainer (after two
    steps each to warm up); run folders are temporary."""
    with tempfile.TemporaryDirectory(prefix="attnkit-precision-") as tmp:
        fp32 = _trainer(config, Path(tmp) / "fp32", threads, bf16=False)
        try:
            default = _trainer(config, Path(tmp) / "default", threads)
        except BaseException:
            fp32.close()
            raise
        try:
            setting = str(default.cfg.run.bf16).lower()
            batches = [[b] for _, b in zip(range(num_batches), fp32.batcher)]
            tokens = sum(b[0].num_tokens for b in batches)
            trainers = {"fp32": fp32, "default": default}
            for t in trainers.values():
                for b in batches[:2]:
                    t.train_step(b)
            times: dict[str, list[float]] = {k: [] for k in trainers}
            for r in range(rounds):
                for name in (list(trainers) if r % 2 == 0 else list(reversed(trainers))):
                    t0 = time.process_time()
                    for b in batches:
                        trainers[name].train_step(b)
                    times[name].append(tokens / (time.process_time() - t0))
            chosen, reason = default.precision.bf16, default.precision.reason
            threads = default.threads.count  # the count held (a request above it is capped)
        finally:
            fp32.close()
            default.close()
    return PrecisionResult(config=config, setting=setting, chosen_bf16=chosen, reason=reason,
                           rounds=times, tokens=tokens, batches=len(batches), threads=threads,
                           machine=machine_info(), date=_dt.date.today().isoformat())
