"""Training end to end on tiny configs: loss, resume exactness, DDP, Bahdanau, bf16."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from attnkit.train.config import TrainConfig
from attnkit.train.trainer import Trainer

TINY_MODEL = dict(num_hiddens=32, num_heads=2, ffn_num_hiddens=48, num_encoder_layers=1,
                  num_decoder_layers=1)
TINY = dict(data="dates", num_examples=400, valid_size=20, eval_sentences=10, max_tokens=600,
            max_sentence_tokens=40, warmup=20, eval_every=0, log_every=1, progress=False,
            device="cpu", threads=1, bf16=False)  # fixed threads and precision: bitwise-equal
# runs on every CPU (bf16 = auto would train in bf16 where the CPU runs it natively)
TINY_CLI = ["--num-hiddens", "32", "--num-heads", "2", "--ffn-num-hiddens", "48",
            "--num-encoder-layers", "1", "--num-decoder-layers", "1", "--bf16", "false"]


def tiny(tmp_path, name="run", model_options=TINY_MODEL, **kw):
    return TrainConfig.from_flat({**TINY, **model_options, "out_dir": str(tmp_path / name),
                                  **kw})


def params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def read_log(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


def test_training_lowers_the_loss_and_logs_metrics(tmp_path):
    cfg = tiny(tmp_path, max_steps=30, dropout=0.0, checkpoint_every=0)
    final = Trainer(cfg, log=None).fit()
    log = read_log(cfg.run.out_dir + "/metrics.jsonl")
    steps = [r for r in log if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 31))
    assert steps[-1]["loss"] < 0.6 * steps[0]["loss"]
    for key in ("ppl", "lr", "tokens_per_s", "grad_norm"):
        assert key in steps[-1]
    assert "val_exact_match" in final and "val_loss" in final
    # the schedule: linear warmup, lr_t = d^-0.5 · t · w^-1.5 during warmup
    assert steps[4]["lr"] == pytest.approx(32 ** -0.5 * 5 * 20 ** -1.5)


# the schedules whose rate after a resume depends on what the checkpoint kept: the cosine's
# horizon, the plateau's best score, count and factor (lowered before and after the stop)
COSINE = dict(schedule="cosine", lr=0.003, warmup=3, min_lr=1e-4)
PLATEAU = dict(schedule="plateau", lr=0.003, warmup=2, eval_every=2, plateau_patience=1,
               decrease_factor=0.5)
# subword sampling, 120 examples: 3 or 4 batches an epoch, each epoch segmented anew; the
# checkpoint at step 4 is inside epoch 1, whose segmentation the resumed run draws again
SAMPLED = dict(tokenizer="sentencepiece", vocab_size=100, sample_alpha=0.3, num_examples=120)


@pytest.mark.parametrize(("accum_steps", "more"), [(1, {}), (2, {}), (1, COSINE),
                                                  (1, PLATEAU), (1, SAMPLED)],
                         ids=["noam", "noam-accum", "cosine", "plateau", "sampled"])
def test_resume_after_a_stop_ends_with_identical_parameters(tmp_path, accum_steps, more):
    kw = dict(max_steps=9, checkpoint_every=4, dropout=0.2, accum_steps=accum_steps, **more)
    straight = Trainer(tiny(tmp_path, "straight", **kw), log=None)
    straight.fit()

    class Killed(Exception):
        pass

    def kill_at_6(trainer, _):
        if trainer.step == 6:
            raise Killed

    stopped = Trainer(tiny(tmp_path, "stopped", **kw), log=None)
    with pytest.raises(Killed):
        stopped.fit(on_step=kill_at_6)  # checkpoint at step 4, steps 5–6 are lost
    resumed = Trainer(tiny(tmp_path, "stopped", **kw), log=None)
    assert resumed.step == 4
    if more is SAMPLED:  # the stop is inside epoch 1 (epoch 0 has 3 batches)
        assert (resumed.batcher.epoch, resumed.batcher.position) == (1, 1)
    resumed.fit()
    a, b = params(straight.model), params(resumed.model)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rates = {name: [r["lr"] for r in read_log(Path(t.cfg.run.out_dir) / "metrics.jsonl")
                    if "lr" in r] for name, t in (("straight", straight), ("resumed", resumed))}
    assert rates["resumed"][-5:] == rates["straight"][-5:]  # steps 5 to 9, after the resume
    if more is PLATEAU:  # lowered at the validations of steps 4, 6, 8 (exact match 0)
        assert rates["straight"][4:] == [0.0015, 0.0015, 0.00075, 0.00075, 0.000375]


def test_sigkill_mid_run_then_resume_matches_uninterrupted_run(tmp_path):
    """A real kill -9 of the command-line training, at an arbitrary moment after a checkpoint."""
    args = ["--data", "dates", "--num-examples", "400", "--valid-size", "10",
            "--eval-sentences", "5", "--max-tokens", "600", *TINY_CLI, "--warmup", "20",
            "--eval-every", "0", "--checkpoint-every", "3", "--max-steps", "12",
            "--dropout", "0.1", "--no-progress", "--device", "cpu", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "attnkit.cli", "train", *args]
    subprocess.run([*cmd, "--out-dir", str(tmp_path / "a")], check=True, env=env,
                   capture_output=True)
    proc = subprocess.Popen([*cmd, "--out-dir", str(tmp_path / "b")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "b" / "checkpoints" / "step-000006"
    import time

    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert ckpt.exists()
    subprocess.run([*cmd, "--out-dir", str(tmp_path / "b")], check=True, env=env,
                   capture_output=True)
    from safetensors.torch import load_file

    a = load_file(tmp_path / "a/checkpoints/step-000012/model.safetensors")
    b = load_file(tmp_path / "b/checkpoints/step-000012/model.safetensors")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def rows(batch):
    """What a batch holds: its examples and their ids."""
    return batch.indices, batch.src.tolist(), batch.tgt_out.tolist()


def test_sampling_draws_the_training_segmentations_only_and_may_not_change_on_resume(
        tmp_path):
    plain, sampled, again = (Trainer(tiny(tmp_path, name, **{**SAMPLED, **kw}, max_steps=1),
                                     log=None) for name, kw in [("plain", dict(sample_alpha=0.0)),
                                              ("sampled", {}), ("again", {})])
    everything = range(len(plain.batcher.examples))  # no example is over the limit here
    epochs = [[rows(t.batcher.collate(everything, epoch=e)) for e in (0, 1)]
              for t in (plain, sampled, again)]
    assert epochs[0][0] == epochs[0][1] == rows(plain.batcher.collate(everything))
    assert epochs[1][0] != epochs[0][0] and epochs[1][1] != epochs[1][0]  # drawn, each epoch
    assert epochs[2] == epochs[1]  # the same seed and epoch, the same draw
    assert [rows(b) for b in plain.batcher.batches_for_epoch(0)] != \
        [rows(b) for b in sampled.batcher.batches_for_epoch(0)]
    # validation and translation segment as encode does (the models start out equal)
    assert [rows(b) for b in plain._validation_batches()] == \
        [rows(b) for b in sampled._validation_batches()]
    sentences = [s for s, _ in plain.valid_pairs[:3]]
    assert plain.translate(sentences) == sampled.translate(sentences)
    again.close()  # closed in the reverse order of their making: each gives back what
    sampled.fit()  # torch's thread setting was when it was made
    plain.close()
    for alpha in (0.5, 0.0):  # another draw would move the examples under the data position
        with pytest.raises(ValueError, match=rf"tokenizer.sample_alpha: stored 0.3, given "
                                             rf"{alpha}\)"):
            Trainer(tiny(tmp_path, "sampled", **{**SAMPLED, "sample_alpha": alpha}), log=None)


def test_a_draw_over_max_sentence_tokens_is_trained_as_encoded_and_reported(tmp_path):
    said = []
    trainer = Trainer(tiny(tmp_path, **{**SAMPLED, "sample_alpha": 0.05}, max_sentence_tokens=12,
                           max_steps=5, checkpoint_every=0), log=said.append)
    kept = trainer.batcher.report.kept
    assert 0 < kept < 120  # some examples are over 12 tokens as encoded: those are filtered
    trainer.fit()
    for epoch in (0, 1):  # the draws over 12 tokens take part, as encode segments them
        assert len({i for b in trainer.batcher.batches_for_epoch(epoch) for i in b.indices}) \
            == kept
        notes = [line for line in said if line.startswith(f"epoch {epoch}: ")]
        assert len(notes) == 1 and re.fullmatch(
            rf"epoch {epoch}: \d+ example\(s\) drawn longer than 12 tokens kept their "
            r"deterministic segmentation \(indices [\d, .]+\)", notes[0]), said


def _one_and_two_processes(tmp_path, *flags: str) -> tuple[list[dict], list[dict]]:
    """The step records of a run on one process and of the same run on two (torchrun)."""
    common = ["--data", "dates", "--num-examples", "300", "--valid-size", "10",
              "--eval-sentences", "4", "--max-tokens", "800", *TINY_CLI,
              "--warmup", "10", "--eval-every", "0", "--checkpoint-every", "0",
              "--max-steps", "6", "--dropout", "0.0", "--log-every", "1", "--no-progress",
              "--device", "cpu", "--batch-multiple", "2", *flags]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "attnkit.cli", "train", *common, "--out-dir",
                    str(tmp_path / "one")], check=True, env=env, capture_output=True)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc-per-node", "2", "-m", "attnkit.cli", "train", *common,
                        "--out-dir", str(tmp_path / "two")], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    one = [x for x in read_log(tmp_path / "one/metrics.jsonl") if "loss" in x]
    two = [x for x in read_log(tmp_path / "two/metrics.jsonl") if "loss" in x]
    return one, two


# with subword sampling each process draws the segmentation of the epoch for itself:
# the same draw, or the global batches (and the losses) would differ
@pytest.mark.parametrize("sampling", [[], ["--tokenizer", "sentencepiece", "--vocab-size",
                                           "100", "--sample-alpha", "0.3"]],
                         ids=["encoded", "sampled"])
def test_two_processes_give_the_losses_of_one_with_the_same_global_batch(tmp_path, sampling):
    pytest.importorskip("torch.distributed")
    one, two = _one_and_two_processes(tmp_path, *sampling)
    assert [x["step"] for x in one] == [x["step"] for x in two] == list(range(1, 7))
    for a, b in zip(one, two):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6)
    # only rank 0 wrote checkpoints and the log
    assert len(list((tmp_path / "two/checkpoints").iterdir())) == 1


def test_two_processes_lower_a_plateau_rate_together_and_one_writes_events(tmp_path):
    """Rank 0 alone decodes the validation; the others take its score, so every rank
    keeps the learning rate of one process (a rank that went on alone would leave
    its replica apart). Only rank 0 writes TensorBoard events."""
    pytest.importorskip("torch.distributed")
    pytest.importorskip("tensorboard")
    one, two = _one_and_two_processes(
        tmp_path, "--schedule", "plateau", "--lr", "0.002", "--warmup", "1",
        "--eval-every", "2", "--plateau-patience", "1", "--tensorboard")
    assert [x["lr"] for x in two] == [x["lr"] for x in one] == \
        [0.002, 0.002, 0.002, 0.002, 0.001, 0.001]  # lowered at step 4 (exact match 0)
    for a, b in zip(one, two):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6)
    assert len(list((tmp_path / "two" / "tensorboard").iterdir())) == 1


def test_bahdanau_model_trains_with_teacher_forcing(tmp_path):
    cfg = tiny(tmp_path, model="bahdanau_small", max_steps=25, dropout=0.0,
               checkpoint_every=0, warmup=10,
               model_options=dict(num_hiddens=32, embed_size=32, num_encoder_layers=1,
                                  num_decoder_layers=1))
    Trainer(cfg, log=None).fit()
    steps = [r for r in read_log(cfg.run.out_dir + "/metrics.jsonl") if "loss" in r]
    assert steps[-1]["loss"] < 0.7 * steps[0]["loss"]


def test_bf16_autocast_training_has_no_nan(tmp_path):
    cfg = tiny(tmp_path, max_steps=4, bf16=True, checkpoint_every=0)
    Trainer(cfg, log=None).fit()
    steps = [r for r in read_log(cfg.run.out_dir + "/metrics.jsonl") if "loss" in r]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in steps)


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match=r"model must be one of .*got 'gpt'"):
        TrainConfig.from_flat(model="gpt")
    with pytest.raises(ValueError, match=r"data='tsv' needs train_path"):
        TrainConfig.from_flat(data="tsv")
    with pytest.raises(ValueError, match=r"unknown config keys \['learning_rate'\]"):
        TrainConfig.from_flat({"learning_rate": 1})  # lr is a key: the peak of a schedule
