"""What may change on resume takes effect; what holds infinity is saved and resumed.

The keys marked ``resume=True`` (the README's list) are changed one at a time on a run
stopped at step 2 and moved to another folder (``out_dir`` changes in every case), and
the effect of each is observed in the resumed run. Validation scores are scripted
(``Trainer._decode_metrics``) so that patience, stop_at and keep_best act at known steps.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from attnkit.runs import list_checkpoints, read_best
from attnkit.train.config import TrainConfig
from attnkit.train.schedule import noam_lr
from attnkit.train.trainer import Trainer

from .test_trainer import TINY_CLI, params, read_log

TINY = dict(data="dates", num_examples=200, valid_size=8, eval_sentences=4, max_tokens=600,
            max_sentence_tokens=40, warmup=20, log_every=1, progress=False, device="cpu",
            threads=1, bf16=False, num_hiddens=16, num_heads=2, ffn_num_hiddens=32,
            num_encoder_layers=1, num_decoder_layers=1, checkpoint_every=1, eval_every=0,
            dropout=0.0, max_steps=2)


def tiny(out_dir, **kw):
    return TrainConfig.from_flat({**TINY, "out_dir": str(out_dir), **kw})


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A run stopped at step 2, checkpoints at steps 1 and 2."""
    out = tmp_path_factory.mktemp("stopped") / "run"
    Trainer(tiny(out), log=None).fit()
    return out


@pytest.fixture
def moved(stopped, tmp_path, monkeypatch):
    """The stopped run copied to a new folder; validations score 0.5 (exact match)."""
    monkeypatch.setattr(Trainer, "_decode_metrics", lambda self: {"val_exact_match": 0.5})
    shutil.copytree(stopped, tmp_path / "moved")
    return tmp_path / "moved"


def resume(out_dir, *, at=2, **changes):
    """Resume ``out_dir`` (stopped at step ``at``) with ``changes``: the trainer after
    fit() and what it said."""
    said: list[str] = []
    t = Trainer(tiny(out_dir, **changes), log=said.append)
    assert t.step == at, "not resumed"
    t.fit()
    return t, said


def steps_with(out_dir: Path, key: str) -> list[int]:
    return [r["step"] for r in read_log(out_dir / "metrics.jsonl") if key in r][-10:]


def checkpoint_steps(out_dir: Path) -> list[int]:
    return [int(p.name.split("-")[1]) for p in list_checkpoints(out_dir / "checkpoints")]


# each case: the changes, then what the resumed run shows because of them
CASES = {
    "max_steps": (dict(max_steps=4), lambda t, said, d: t.step == 4),
    "epochs": (dict(max_steps=None, epochs=1, checkpoint_every=0),
               lambda t, said, d: t.batcher.epoch == 1 and "epochs = 1 done" in t.stopped_because),
    "time_limit": (dict(max_steps=None, time_limit=1e-6),
                   lambda t, said, d: t.step == 2 and "time_limit" in t.stopped_because),
    "stop_at": (dict(max_steps=10, eval_every=1, stop_at=0.5),
                lambda t, said, d: t.step == 3 and "stop_at" in t.stopped_because),
    "patience": (dict(max_steps=10, eval_every=1, patience=2),
                 # 3: first score (best), 4 and 5: not better -> stop at 5
                 lambda t, said, d: t.step == 5 and "no better" in t.stopped_because),
    "eval_every": (dict(max_steps=6, eval_every=2),
                   # 2: the final validation of the stopped run; 6: a step and the end
                   lambda t, said, d: steps_with(d, "val_loss") == [2, 4, 6, 6]),
    "log_every": (dict(max_steps=6, log_every=2),
                  lambda t, said, d: steps_with(d, "loss") == [1, 2, 4, 6]),
    "checkpoint_every": (dict(max_steps=6, checkpoint_every=3, keep_last=10),
                         lambda t, said, d: checkpoint_steps(d) == [1, 2, 3, 6]),
    "keep_last": (dict(max_steps=4, keep_last=1), lambda t, said, d: checkpoint_steps(d) == [4]),
    "keep_best": (dict(max_steps=4, eval_every=1, keep_best=1),
                  lambda t, said, d: [e["step"] for e in read_best(d / "checkpoints")] == [3]),
    "threads": (dict(max_steps=3, threads=2),
                lambda t, said, d: t.threads.count == 2 and runtime(d, 3)["threads"] == 2),
    "bf16": (dict(max_steps=3, bf16=True),
             lambda t, said, d: t.precision.bf16 and runtime(d, 3)["bf16"] is True),
    "backend": (dict(max_steps=3, backend="reference"),
                lambda t, said, d: t.model.encoder.blocks[0].attention.backend == "reference"),
    "tensorboard": (dict(max_steps=3, tensorboard=True),
                    lambda t, said, d: len(list((d / "tensorboard").iterdir())) == 1),
}


def runtime(out_dir: Path, step: int) -> dict:
    path = out_dir / "checkpoints" / f"step-{step:06d}" / "config.json"
    return json.loads(path.read_text())["runtime"]


@pytest.mark.parametrize("key", sorted(CASES))
def test_a_key_changed_on_resume_takes_effect(moved, key):
    changes, took_effect = CASES[key]
    t, said = resume(moved, **changes)
    assert took_effect(t, said, moved), (key, t.step, t.stopped_because)


def test_a_new_lr_scale_sets_the_learning_rate_of_the_resumed_steps(moved):
    t, said = resume(moved, max_steps=4, lr_scale=0.5)
    lrs = {r["step"]: r["lr"] for r in read_log(moved / "metrics.jsonl") if "lr" in r}
    for step, scale in [(1, 1.0), (2, 1.0), (3, 0.5), (4, 0.5)]:
        assert lrs[step] == pytest.approx(noam_lr(step, d_model=16, warmup=20, scale=scale))
    assert "lr_scale changed: 1 -> 0.5 from step 3 on" in said
    # the new factor is the schedule's own now: a further resume with it says nothing
    t, said = resume(moved, at=4, max_steps=5, lr_scale=0.5)
    assert not any("lr_scale changed" in s for s in said), said
    lrs = {r["step"]: r["lr"] for r in read_log(moved / "metrics.jsonl") if "lr" in r}
    assert lrs[5] == pytest.approx(noam_lr(5, d_model=16, warmup=20, scale=0.5))


def test_clip_norm_inf_trains_past_a_save_and_resumes_as_if_never_stopped(tmp_path):
    kw = dict(clip_norm=float("inf"), max_steps=6, checkpoint_every=3, dropout=0.1)
    straight = Trainer(tiny(tmp_path / "straight", **kw), log=None)
    straight.fit()
    Trainer(tiny(tmp_path / "stopped", **{**kw, "max_steps": 3}), log=None).fit()
    stored = json.loads((tmp_path / "stopped/checkpoints/step-000003/config.json").read_text())
    assert stored["train"]["optim"]["clip_norm"] == "inf"
    resumed = Trainer(tiny(tmp_path / "stopped", **kw), log=None)  # compares equal: resumes
    assert resumed.step == 3
    resumed.fit()
    a, b = params(straight.model), params(resumed.model)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    norms = [r["grad_norm"] for r in read_log(tmp_path / "stopped/metrics.jsonl")
             if "grad_norm" in r]
    assert len(norms) == 6 and all(0 < n < float("inf") for n in norms)  # measured, not off
    with pytest.raises(ValueError, match=r"optim.clip_norm: stored 'inf', given 1.0"):
        Trainer(tiny(tmp_path / "stopped", **{**kw, "clip_norm": 1.0}), log=None)


def _train(procs: int, args: list[str]) -> subprocess.CompletedProcess:
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", str(procs)] if procs > 1 else [sys.executable])
    r = subprocess.run([*launch, "-m", "attnkit.cli", "train", *args], capture_output=True,
                       text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.mark.parametrize("first, then", [(2, 1), (1, 2)])
def test_another_number_of_processes_resumes_with_the_same_global_batches(
        tmp_path, first, then):
    """``first`` processes to step 3, then ``then`` to step 6: the global batches
    (multiples of ``first``) and so the losses are those of one process batching in
    multiples of ``first`` from the start."""
    pytest.importorskip("torch.distributed")
    common = ["--data", "dates", "--num-examples", "300", "--valid-size", "10",
              "--eval-sentences", "4", "--max-tokens", "800", *TINY_CLI,
              "--warmup", "10", "--eval-every", "0", "--checkpoint-every", "0",
              "--dropout", "0.0", "--log-every", "1", "--no-progress", "--device", "cpu",
              "--threads", "1"]
    _train(1, [*common, "--max-steps", "6", "--batch-multiple", str(first), "--out-dir",
               str(tmp_path / "straight")])
    _train(first, [*common, "--max-steps", "3", "--out-dir", str(tmp_path / "resumed")])
    r = _train(then, [*common, "--max-steps", "6", "--out-dir", str(tmp_path / "resumed")])
    assert f"resumed with world size {then} a run trained with world size {first}" in r.stdout
    one = [x for x in read_log(tmp_path / "straight/metrics.jsonl") if "loss" in x]
    two = [x for x in read_log(tmp_path / "resumed/metrics.jsonl") if "loss" in x]
    assert [x["step"] for x in one] == [x["step"] for x in two] == list(range(1, 7))
    for a, b in zip(one, two):
        assert a["train_tokens"] == b["train_tokens"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6)


def _strip_keys(ckpt: Path, keys: dict[str, tuple[str, ...]]) -> None:
    """Take ``keys`` (table -> keys) out of the train config of checkpoint ``ckpt``, as a
    release from before them wrote it, and list its new size and hash in the manifest."""
    from attnkit._io import sha256_of_file

    path = ckpt / "config.json"
    config = json.loads(path.read_text())
    for table, names in keys.items():
        for name in names:
            del config["train"][table][name]
    path.write_text(json.dumps(config, indent=1))
    manifest = json.loads((ckpt / "manifest.json").read_text())
    manifest["files"]["config.json"] = {"bytes": path.stat().st_size,
                                        "sha256": sha256_of_file(path)}
    (ckpt / "manifest.json").write_text(json.dumps(manifest, indent=1))


NEWER_KEYS = {"optim": ("schedule", "lr", "warmup_init_lr", "min_lr", "total_steps",
                        "decrease_factor", "plateau_patience"), "run": ("tensorboard",)}


def test_a_run_stored_before_the_schedule_keys_resumes_as_noam(moved):
    _strip_keys(moved / "checkpoints" / "step-000002", NEWER_KEYS)
    with pytest.raises(ValueError, match=r"optim.schedule: stored 'noam', given 'cosine'"):
        Trainer(tiny(moved, schedule="cosine", lr=1e-3, warmup=1, max_steps=4), log=None)
    t, said = resume(moved, max_steps=4)
    lrs = {r["step"]: r["lr"] for r in read_log(moved / "metrics.jsonl") if "lr" in r}
    assert lrs[3] == noam_lr(3, d_model=16, warmup=20)
    assert lrs[4] == noam_lr(4, d_model=16, warmup=20)


def test_a_cosine_resumed_with_more_steps_keeps_its_horizon_and_says_so(tmp_path):
    cosine = dict(schedule="cosine", lr=0.01, warmup=1, min_lr=0.001)
    Trainer(tiny(tmp_path, **cosine), log=None).fit()  # max_steps = 2: the horizon
    t, said = resume(tmp_path, max_steps=4, **cosine)
    assert any("the cosine schedule keeps the horizon it started with: it decays until "
               "step 2, then stays at min_lr" in s for s in said), said
    lrs = {r["step"]: r["lr"] for r in read_log(tmp_path / "metrics.jsonl") if "lr" in r}
    assert [lrs[s] for s in (1, 2, 3, 4)] == [0.01, 0.001, 0.001, 0.001]
