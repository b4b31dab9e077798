"""Set-up of a run, above all the resume check: a run continues only with its own settings."""

import json
import shutil
from pathlib import Path

import pytest

from attnkit.cli import main
from attnkit.train.config import TrainConfig
from attnkit.train.trainer import Trainer

from .._data import digits_pairs_file
from ..runs._edit import edit_config
from ..runs._helpers import count_verifications


def pairs_file(path, n=300):
    return digits_pairs_file(path, n)


def tiny(tmp_path, **kw):
    base = dict(data="tsv", train_path=str(tmp_path / "pairs.tsv"), tokenizer="word",
                valid_size=20, eval_sentences=4, max_tokens=400, max_sentence_tokens=12,
                num_hiddens=16, num_heads=2, ffn_num_hiddens=32, num_encoder_layers=1,
                num_decoder_layers=1, warmup=10, eval_every=0, checkpoint_every=2,
                progress=False, device="cpu", out_dir=str(tmp_path / "run"), max_steps=2,
                threads=1, bf16=False)  # the same run on every CPU, idle or busy
    return TrainConfig.from_flat({**base, **kw})


@pytest.fixture
def trained(tmp_path):
    pairs_file(tmp_path / "pairs.tsv")
    Trainer(tiny(tmp_path), log=None).fit()
    return tmp_path


def test_resume_with_other_architecture_or_tokenizer_is_refused_listing_the_fields(trained):
    (trained / "pairs.tsv").unlink()  # the refusal comes before any data is read
    with pytest.raises(ValueError) as e:
        Trainer(tiny(trained, num_heads=4, tokenizer="char", max_steps=4), log=None)
    msg = str(e.value)
    assert msg.startswith(f"cannot resume {trained / 'run' / 'checkpoints' / 'step-000002'}")
    assert "tokenizer.kind: stored 'word', given 'char'" in msg
    assert "model.num_heads: stored 2, given 4" in msg
    assert "start a new run in another directory with --out-dir" in msg
    assert "max_steps" not in msg  # may change on resume


def test_resume_with_changes_that_are_allowed_continues(trained):
    t = Trainer(tiny(trained, max_steps=4, log_every=1, lr_scale=0.5, checkpoint_every=3,
                     keep_last=2, eval_sentences=2, backend="reference"), log=None)
    assert t.step == 2
    t.fit()
    assert t.step == 4


def test_resume_refusal_from_the_command_line(trained, capsys):
    code = main(["train", "--data", "tsv", "--train-path", str(trained / "pairs.tsv"),
                 "--tokenizer", "word", "--num-hiddens", "32", "--out-dir",
                 str(trained / "run"), "--no-progress", "--device", "cpu"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("attnkit train: error: cannot resume")
    assert "model.num_hiddens: stored 16, given 32" in err


def test_a_run_saved_before_sample_alpha_existed_resumes(trained):
    """Its config.json has no [tokenizer] sample_alpha: it trained without sampling."""
    def drop(meta):
        del meta["train"]["tokenizer"]["sample_alpha"]

    edit_config(trained / "run" / "checkpoints" / "step-000002", drop)
    t = Trainer(tiny(trained, max_steps=3), log=None)
    assert t.step == 2 and t.batcher.resample is None
    t.fit()
    assert t.step == 3


def test_a_run_of_another_format_is_not_resumed(trained):
    edit_config(trained / "run" / "checkpoints" / "step-000002",
                lambda meta: meta.update(format_version=3))
    with pytest.raises(ValueError, match=r"run format_version 3 cannot be read by this attnkit, "
                                         r"which reads run format_version 2"):
        Trainer(tiny(trained, max_steps=4), log=None)


def test_the_checkpoint_describes_the_run(trained):
    meta = json.loads((trained / "run/checkpoints/step-000002/config.json").read_text())
    assert meta["format_version"] == 2
    assert meta["model"]["class"] == "TransformerConfig" and meta["model"]["num_heads"] == 2
    assert meta["tokenizer"]["kind"] == "word" and meta["tokenizer"]["shared"]
    assert TrainConfig.from_dict(meta["train"]) == tiny(trained)


def test_training_stops_at_a_validation_target(trained):
    t = Trainer(tiny(trained, out_dir=str(trained / "target"), max_steps=50, eval_every=3,
                     stop_at=0.0), log=None)
    t.fit()
    assert t.step == 3 and t.stopped_because.startswith("validation score")
    t = Trainer(tiny(trained, out_dir=str(trained / "steps"), max_steps=3), log=None)
    t.fit()
    assert t.stopped_because == "max_steps = 3 reached"


def test_the_run_records_its_precision_and_threads(trained):
    meta = json.loads((trained / "run/checkpoints/step-000002/config.json").read_text())
    runtime = meta["runtime"]
    assert isinstance(runtime["bf16"], bool) and runtime["reason"]
    assert runtime["threads"] >= 1 and runtime["isa"] and runtime["cpu"]


def test_resume_opens_the_run_once(trained, monkeypatch):
    """Resuming verifies the checkpoint once: choosing the newest that verifies opens it
    (attnkit.runs.open_latest_run); the trainer restores the opened run."""
    from attnkit.runs import container, retention

    calls, real = [], container.verify_checkpoint
    for module in (container, retention):  # retention chooses, the run opens
        monkeypatch.setattr(module, "verify_checkpoint", lambda p: calls.append(p) or real(p))
    t = Trainer(tiny(trained, max_steps=4), log=None)
    assert t.step == 2
    assert [p.name for p in calls] == ["step-000002"]


def test_resume_past_a_corrupt_head_verifies_each_checkpoint_once(trained, monkeypatch):
    """A corrupt newest checkpoint is verified once, fails and is set aside; the one
    before it is verified once and resumed."""
    ckpts = trained / "run" / "checkpoints"
    head = Path(shutil.copytree(ckpts / "step-000002", ckpts / "step-000004"))
    data = bytearray((head / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (head / "model.safetensors").write_bytes(bytes(data))
    calls, said = count_verifications(monkeypatch), []
    t = Trainer(tiny(trained, max_steps=6), log=said.append)
    assert t.step == 2
    assert [p.name for p in calls] == ["step-000004", "step-000002"]
    assert (ckpts / "step-000004.corrupt").is_dir() and not head.exists()
    said = "\n".join(said)
    assert "skipped: checkpoint" in said and "moved to step-000004.corrupt" in said


def test_a_run_of_another_format_is_refused_once_and_left_in_place(trained, monkeypatch):
    """A checkpoint that verifies but describes a newer run format is not corrupt: the
    resume is refused, after one verification, and the checkpoint stays as it is."""
    ckpt = trained / "run" / "checkpoints" / "step-000002"
    edit_config(ckpt, lambda meta: meta.update(format_version=3))
    calls = count_verifications(monkeypatch)
    with pytest.raises(ValueError, match=r"run format_version 3 cannot be read"):
        Trainer(tiny(trained, max_steps=4), log=None)
    assert calls == [ckpt]
    assert ckpt.is_dir() and not ckpt.with_name("step-000002.corrupt").exists()


# ---------------------------------------------------------------- bf16 = auto on the CPU
def _auto_run(tmp_path, monkeypatch, step_ratio, cpu_ratio=6.0):
    """A run with ``bf16 = "auto"`` on a CPU whose bf16 matmul measures ``cpu_ratio`` x fp32
    (flags and ratio substituted) and whose training steps measure ``step_ratio``; returns
    the trainer and the step measurements taken."""
    from attnkit import runtime
    from attnkit.train import setup

    monkeypatch.delenv("ATTNKIT_CPU_BF16", raising=False)
    monkeypatch.setenv("ATTNKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"amx_bf16", "avx512_bf16"})
    monkeypatch.setattr(runtime, "bf16_speed_ratio", lambda: cpu_ratio)
    monkeypatch.setattr(runtime, "cached_bf16_speed_ratio", lambda *a: cpu_ratio)
    taken = []
    monkeypatch.setattr(setup, "_bf16_step_ratio",
                        lambda *a, **k: taken.append(1) or step_ratio)
    pairs_file(tmp_path / "pairs.tsv")
    return Trainer(tiny(tmp_path, bf16="auto"), log=None), taken


@pytest.mark.parametrize("step_ratio", [0.4, 1.6])
def test_auto_keeps_bf16_only_where_a_step_of_this_model_is_faster(tmp_path, monkeypatch,
                                                                    step_ratio):
    trainer, taken = _auto_run(tmp_path, monkeypatch, step_ratio)
    trainer.close()
    p = trainer.precision
    assert p.bf16 is (step_ratio > 1) and taken == [1]
    assert f"a training step of this model measured {step_ratio:.2f}x fp32's speed" in p.reason
    assert ("too small to repay autocast's casts" in p.reason) is (step_ratio < 1)
    # measured once per machine, model and batch budget: a second run reads the cache
    shutil.rmtree(tmp_path / "run")
    again, taken_again = _auto_run(tmp_path, monkeypatch, step_ratio=99.0)
    again.close()
    assert taken_again == [] and again.precision.bf16 is p.bf16


def test_the_step_check_is_skipped_where_the_answer_is_given(tmp_path, monkeypatch):
    """Forced bf16, a CPU whose matmul is slow in bf16, and the substituted CPU answer
    (``ATTNKIT_CPU_BF16``) take no step measurement."""
    trainer, taken = _auto_run(tmp_path, monkeypatch, 0.4, cpu_ratio=0.5)
    trainer.close()
    assert taken == [] and not trainer.precision.bf16
    for env, bf16 in (("native", "auto"), (None, True)):
        shutil.rmtree(tmp_path / "run")
        if env:
            monkeypatch.setenv("ATTNKIT_CPU_BF16", env)
        from attnkit.train import setup
        monkeypatch.setattr(setup, "_bf16_step_ratio", lambda *a, **k: taken.append(1) or 0.4)
        t = Trainer(tiny(tmp_path, bf16=bf16), log=None)
        t.close()
        assert taken == [] and t.precision.bf16
        monkeypatch.delenv("ATTNKIT_CPU_BF16", raising=False)


def test_the_step_measurement_leaves_torchs_random_state_and_the_data_as_they_were(tmp_path):
    import torch

    from attnkit.train.setup import _bf16_step_ratio

    pairs_file(tmp_path / "pairs.tsv")
    trainer = Trainer(tiny(tmp_path), log=None)
    trainer.close()
    state, position = torch.get_rng_state(), trainer.batcher.state_dict()
    ratio = _bf16_step_ratio(trainer.cfg, trainer.model_config, trainer.batcher, rounds=1)
    assert ratio > 0
    assert torch.equal(torch.get_rng_state(), state)
    assert trainer.batcher.state_dict() == position
