"""A training that diverges stops at the first non-finite loss, gradient norm or weight,
writes nothing non-finite, ranks nothing non-finite, keeps its last finite checkpoint and
resumes from it; on one process or two (torchrun), from the API or the command line."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from attnkit.cli import main
from attnkit.runs.retention import read_best

from .test_trainer import TINY_CLI, Trainer, read_log, tiny

NAN = float("nan")


def checkpoints(run: str | Path) -> list[Path]:
    return sorted((Path(run) / "checkpoints").glob("step-*"))


def assert_all_finite(folders: list[Path]) -> None:
    assert folders
    for ckpt in folders:
        for k, t in load_file(ckpt / "model.safetensors").items():
            assert torch.isfinite(t).all(), (ckpt.name, k)


def nan_loss_at(trainer, step: int) -> None:
    """The model's output (hence the loss) is NaN in the forward of optimizer step ``step``
    only; its gradients are NaN too."""
    def hook(module, inputs, output):
        return output * NAN if trainer.step == step - 1 else None

    trainer.model.register_forward_hook(hook)


def test_a_nan_loss_stops_at_its_step_and_the_run_resumes_from_the_last_finite_one(
        tmp_path):
    kw = dict(max_steps=9, checkpoint_every=2, keep_last=2, eval_every=2, keep_best=1)
    trainer = Trainer(tiny(tmp_path, **kw), log=None)
    nan_loss_at(trainer, 7)
    with pytest.raises(ValueError, match=r"^training stopped at step 7: the loss is nan; "
                                         r"the last finite checkpoint, \S+step-000006, resumes "
                                         r"with a lower --lr-scale \(now 1\); a longer "
                                         r"--warmup \(now 20\) or a lower --clip-norm \(now 1\) "
                                         r"needs a new run \(--out-dir\)$"):
        trainer.fit()
    assert trainer.step == 6  # the step was not applied
    kept = checkpoints(trainer.cfg.run.out_dir)
    best = {e["step"] for e in read_best(trainer.ckpt_dir)}
    assert [c.name for c in kept][-2:] == ["step-000004", "step-000006"]  # keep_last = 2
    assert {int(c.name[5:]) for c in kept[:-2]} <= best
    assert_all_finite(kept)
    assert best and best <= {2, 4, 6}
    steps = [r["step"] for r in read_log(Path(trainer.cfg.run.out_dir) / "metrics.jsonl")
             if "loss" in r]
    assert steps == list(range(1, 7))  # nothing recorded for the step that diverged
    resumed = Trainer(tiny(tmp_path, **{**kw, "lr_scale": 0.5}), log=None)
    assert resumed.step == 6
    final = resumed.fit()
    assert final["step"] == 9 and math.isfinite(final["val_loss"])
    assert_all_finite(checkpoints(resumed.cfg.run.out_dir))


@pytest.mark.parametrize("clip_norm", [None, 1.0])
def test_a_nan_gradient_under_accumulation_stops_though_the_loss_is_finite(tmp_path,
                                                                          clip_norm):
    trainer = Trainer(tiny(tmp_path, max_steps=5, accum_steps=2, clip_norm=clip_norm,
                           checkpoint_every=2), log=None)
    calls = []

    def second_micro_batch_of_step_3(grad):  # called once per backward
        calls.append(trainer.step)
        return grad * NAN if calls.count(2) == 2 else grad

    next(trainer.model.parameters()).register_hook(second_micro_batch_of_step_3)
    with pytest.raises(ValueError, match=r"^training stopped at step 3: the gradient norm is "
                                         r"nan; the last finite checkpoint, \S+step-000002,"):
        trainer.fit()
    assert_all_finite(checkpoints(trainer.cfg.run.out_dir))
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_clip_norm_inf_is_no_clipping_and_no_divergence(tmp_path):
    trainer = Trainer(tiny(tmp_path, clip_norm=math.inf), log=None)
    try:  # steps only: saving a config that holds inf is the config's matter
        batches = iter(trainer.batcher)
        outs = [trainer.train_step([next(batches)]) for _ in range(3)]
    finally:
        trainer.close()
    assert trainer.step == 3
    assert all(math.isfinite(o["grad_norm"]) and math.isfinite(o["loss"]) for o in outs)


def test_weights_that_turn_non_finite_are_not_checkpointed(tmp_path):
    """Defence in depth: weights made infinite between steps stop the run at the next
    checkpoint, which is not written, instead of replacing the finite ones."""
    trainer = Trainer(tiny(tmp_path, max_steps=8, checkpoint_every=2, keep_last=1),
                      log=None)
    name, weight = next(iter(trainer.model.named_parameters()))

    def break_weights(t, _):
        if t.step == 3:
            with torch.no_grad():
                weight.view(-1)[:3] = math.inf

    with pytest.raises(ValueError, match=rf"^training stopped at step 4: the weights are not "
                                         rf"finite \({re.escape(name)}: 3 inf of \d+\); "
                                         r"the last finite checkpoint, \S+step-000002,"):
        trainer.fit(on_step=break_weights)
    assert [c.name for c in checkpoints(trainer.cfg.run.out_dir)] == ["step-000002"]
    assert_all_finite(checkpoints(trainer.cfg.run.out_dir))


def test_validation_scores_that_are_not_finite_are_never_ranked(tmp_path):
    trainer = Trainer(tiny(tmp_path, max_steps=1, keep_best=2), log=None)
    try:
        assert trainer._note_validation({"val_exact_match": NAN}) is None
        assert trainer.validation["best_score"] is None
    finally:
        trainer.close()


def train_cli(tmp_path, *flags):
    return ["train", "--data", "dates", "--num-examples", "200", "--valid-size", "10",
            "--eval-sentences", "4", "--max-tokens", "600", *TINY_CLI, "--warmup", "2",
            "--eval-every", "0", "--checkpoint-every", "1", "--no-progress", "--device",
            "cpu", "--threads", "1", "--out-dir", str(tmp_path / "run"), *flags]


def test_the_command_line_exits_non_zero_with_one_line_and_keeps_the_finite_checkpoint(
        tmp_path, capsys):
    code = main(train_cli(tmp_path, "--lr-scale", "1e20", "--clip-norm", "none",
                          "--max-steps", "6"))
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert code == 2
    assert len(err) == 1 and err[0].startswith(
        "attnkit train: error: training stopped at step 2: the loss is nan; the last finite "
        f"checkpoint, {tmp_path / 'run' / 'checkpoints' / 'step-000001'}, resumes with a "
        "lower --lr-scale (now 1e+20); a longer --warmup (now 2) or --clip-norm 1 (now none) "
        "needs a new run (--out-dir)"), err
    ckpts = checkpoints(tmp_path / "run")
    assert [c.name for c in ckpts] == ["step-000001"]
    assert_all_finite(ckpts)


def test_a_learning_rate_beyond_float32_stops_at_the_first_step(tmp_path, capsys):
    assert main(train_cli(tmp_path, "--lr-scale", "1e40", "--max-steps", "3")) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("attnkit train: error: training stopped at step 1: the learning rate is "
                   "6.25e+38, beyond what float32 weights can take; no checkpoint was written "
                   "before it; train again with a lower --lr-scale (now 1e+40)")
    assert not checkpoints(tmp_path / "run")


def test_a_peak_rate_beyond_float32_names_lr_as_what_to_lower(tmp_path, capsys):
    assert main(train_cli(tmp_path, "--schedule", "inverse_sqrt", "--lr", "1e300",
                          "--warmup", "1", "--max-steps", "3")) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("attnkit train: error: training stopped at step 1: the learning rate is "
                   "1e+300, beyond what float32 weights can take; no checkpoint was written "
                   "before it; train again with a lower --lr-scale (now 1) or a lower --lr "
                   "(now 1e+300)")


NAN_ON_RANK_1 = """
import sys
import torch
import torch.distributed as dist
from attnkit.cli import main
from attnkit.train import trainer

real = trainer.batch_loss
calls = []

def batch_loss(model, batch, **kw):
    loss, nll, n = real(model, batch, **kw)
    calls.append(1)
    if model.training and dist.get_rank() == 1 and len(calls) == 3:
        loss = loss + torch.tensor(float("nan"))  # a NaN loss, finite gradients
    return loss, nll, n

trainer.batch_loss = batch_loss
code = main(sys.argv[1:])
# torchrun stops the other workers once one exits non-zero: each rank records that it
# stopped by itself, then waits for the other's record, so neither is cut off first
import os, pathlib, time
rank = os.environ["RANK"]
here = pathlib.Path(__file__).parent
(here / f"rank-{rank}.exit").write_text(str(code))
deadline = time.monotonic() + 60
while len(list(here.glob("rank-*.exit"))) < 2 and time.monotonic() < deadline:
    time.sleep(0.05)
sys.exit(code)
"""


def test_two_processes_stop_together_when_one_rank_sees_a_nan_loss(tmp_path):
    """Rank 1 alone sees a NaN loss at step 3 (its gradients stay finite): both ranks
    stop at step 3 and exit non-zero; none waits for the other."""
    pytest.importorskip("torch.distributed")
    script = tmp_path / "nan_on_rank_1.py"
    script.write_text(NAN_ON_RANK_1)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc-per-node", "2", str(script),
                        *train_cli(tmp_path, "--max-steps", "6", "--batch-multiple", "2")],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert sorted(p.read_text() for p in tmp_path.glob("rank-*.exit")) == ["2", "2"], r.stderr
    # one line from each rank (counted, not split: two processes writing to one pipe may
    # put one's line before the other's newline)
    assert r.stderr.count("training stopped at step") == 2, r.stderr[-3000:]
    assert r.stderr.count("training stopped at step 3: the loss is nan; the last finite "
                          "checkpoint, ") == 2, r.stderr[-3000:]
    assert [c.name for c in checkpoints(tmp_path / "run")] == ["step-000001", "step-000002"]
    assert_all_finite(checkpoints(tmp_path / "run"))

