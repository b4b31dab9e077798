"""Early stopping (``patience``) and the best checkpoints (``keep_best``, ``best.json``,
``RUN/best``).

The validation scores are scripted (``Trainer._decode_metrics`` returns a score per
step), so what a run keeps and when it stops is known exactly; the runs are a few steps
of a tiny Transformer on the built-in dates task.
"""

import json
from pathlib import Path

import pytest

from attnkit.cli import main
from attnkit.runs import (
    BEST,
    list_checkpoints,
    open_run,
    read_best,
    resolve_checkpoint,
)
from attnkit.train.config import TrainConfig
from attnkit.train.trainer import Trainer

from ..runs._edit import edit_json

TINY = dict(data="dates", num_examples=200, valid_size=8, eval_sentences=4, max_tokens=600,
            max_sentence_tokens=40, warmup=20, log_every=1, progress=False, device="cpu",
            threads=1, bf16=False, num_hiddens=16, num_heads=2, ffn_num_hiddens=32,
            num_encoder_layers=1, num_decoder_layers=1, checkpoint_every=0)


def tiny(tmp_path, **kw):
    return TrainConfig.from_flat({**TINY, "out_dir": str(tmp_path / "run"), **kw})


@pytest.fixture
def scripted(monkeypatch):
    """``scripted({step: score})``: validation at ``step`` scores ``score`` (exact match)."""
    def script(scores: dict):
        monkeypatch.setattr(Trainer, "_decode_metrics",
                            lambda self: {"val_exact_match": scores[self.step]})
    return script


def names(run: Path) -> list[str]:
    return [p.name for p in list_checkpoints(run / "checkpoints")]


# ------------------------------------------------------------------------ patience
SCORES = {2: 0.5, 4: 0.7, 6: 0.6, 8: 0.7, 10: 0.65, 12: 0.9, 14: 0.9}


def test_patience_stops_after_that_many_validations_without_a_better_score(
        tmp_path, scripted):
    scripted(SCORES)
    t = Trainer(tiny(tmp_path, max_steps=100, eval_every=2, patience=3), log=None)
    t.fit()
    # 4: best 0.7; 6: 0.6, 8: 0.7 (equal is not better), 10: 0.65 -> three in a row
    assert t.step == 10
    assert t.stopped_because == ("no better validation score in 3 validations "
                                 "(best 0.700 at step 4)")
    log = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    validations = [(r["step"], r["val_exact_match"]) for r in log if "val_exact_match" in r]
    assert validations == [(2, 0.5), (4, 0.7), (6, 0.6), (8, 0.7), (10, 0.65), (10, 0.65)]


def test_without_patience_the_run_goes_on(tmp_path, scripted):
    scripted(SCORES)
    t = Trainer(tiny(tmp_path, max_steps=12, eval_every=2), log=None)
    t.fit()
    assert t.step == 12 and t.stopped_because == "max_steps = 12 reached"


def test_best_score_and_patience_count_survive_a_resume(tmp_path, scripted):
    scripted(SCORES)
    first = Trainer(tiny(tmp_path, max_steps=6, eval_every=2, patience=3,
                         checkpoint_every=2), log=None)
    first.fit()
    state = json.loads((tmp_path / "run/checkpoints/step-000006/train_state.json").read_text())
    assert state["validation"] == {"best_score": 0.7, "best_step": 4, "since_best": 1,
                                   "step": 6}
    resumed = Trainer(tiny(tmp_path, max_steps=100, eval_every=2, patience=3,
                           checkpoint_every=2), log=None)
    assert resumed.step == 6
    resumed.fit()
    # a fresh count would take 8 (0.7) as its best and run on past 10
    assert resumed.step == 10
    assert resumed.stopped_because.endswith("(best 0.700 at step 4)")


def test_a_checkpoint_without_the_validation_state_resumes_with_a_fresh_one(
        tmp_path, scripted):
    scripted({2: 0.5, 4: 0.7, 6: 0.6, 8: 0.3, 10: 0.2, 12: 0.1})
    Trainer(tiny(tmp_path, max_steps=6, eval_every=2, checkpoint_every=2), log=None).fit()
    # as written before patience: no validation state
    edit_json(tmp_path / "run/checkpoints/step-000006", "train_state.json",
              lambda state: {k: v for k, v in state.items() if k != "validation"})
    t = Trainer(tiny(tmp_path, max_steps=100, eval_every=2, patience=2, checkpoint_every=2),
                log=None)
    assert t.step == 6 and t.validation["best_score"] is None
    t.fit()
    # the count starts again at 8 (0.3, the first best): 10 and 12 are worse
    assert (t.step, t.stopped_because) == (12, "no better validation score in 2 validations "
                                               "(best 0.300 at step 8)")


@pytest.mark.parametrize("flat, file_text, label", [
    (dict(patience=3, eval_every=0), None, ("--patience", "--eval-every")),
    (None, "[run]\npatience = 2\neval_every = 0\n", ("[run] patience", "[run] eval_every")),
])
def test_patience_without_validations_is_a_config_error_naming_both_keys(
        tmp_path, flat, file_text, label):
    with pytest.raises(ValueError) as e:
        if flat is not None:
            TrainConfig.from_flat(flat)
        else:
            (tmp_path / "run.toml").write_text(file_text)
            TrainConfig.from_file(tmp_path / "run.toml")
    msg = str(e.value)
    assert f"{label[0]} = " in msg and f"{label[1]} = 0 turns off" in msg
    if file_text:
        assert msg.startswith(f"{tmp_path / 'run.toml'}: ")
    TrainConfig.from_flat(patience=3, eval_every=5)  # fine with validations
    with pytest.raises(ValueError, match=r"--patience must be a positive int; got 0"):
        TrainConfig.from_flat(patience=0)
    with pytest.raises(ValueError, match=r"--keep-best must be a non-negative int; got -1"):
        TrainConfig.from_flat(keep_best=-1)


# ------------------------------------------------------------------------ keep_best
KEEP = {2: 0.3, 4: 0.9, 6: 0.5, 8: 0.8, 10: 0.1, 12: 0.2}


@pytest.fixture
def kept(tmp_path, scripted):
    """A run of 10 steps, validated every 2, keep_last 1, keep_best 2, scored by KEEP."""
    scripted(KEEP)
    Trainer(tiny(tmp_path, max_steps=10, eval_every=2, keep_last=1, keep_best=2),
            log=None).fit()
    return tmp_path / "run"


def test_keep_best_keeps_the_best_scoring_checkpoints_beside_the_last(kept):
    # 2 (0.3) and 6 (0.5) entered the best two and fell out; 10 is the last
    assert names(kept) == ["step-000004", "step-000008", "step-000010"]
    assert sorted(p.name for p in (kept / "checkpoints").iterdir()) == [
        BEST, "step-000004", "step-000008", "step-000010"]
    assert json.loads((kept / "checkpoints" / BEST).read_text()) == [
        {"step": 4, "score": 0.9, "metric": "val_exact_match"},
        {"step": 8, "score": 0.8, "metric": "val_exact_match"}]
    state = open_run(kept / "checkpoints" / "step-000008").train_state
    assert state["validation"]["best_step"] == 4  # saved at its validation, not later


def test_only_a_validation_among_the_best_writes_a_checkpoint(tmp_path, scripted):
    scripted(KEEP)
    Trainer(tiny(tmp_path, max_steps=10, eval_every=2, keep_last=10, keep_best=1),
            log=None).fit()
    # 2 and 4 were each the best so far; 6 and 8 were not; 10 is the end of the run
    assert names(tmp_path / "run") == ["step-000002", "step-000004", "step-000010"]
    assert [e["step"] for e in read_best(tmp_path / "run" / "checkpoints")] == [4]


def test_run_best_resolves_to_the_best_checkpoint(kept, capsys):
    assert resolve_checkpoint(kept / "best") == kept / "checkpoints" / "step-000004"
    assert resolve_checkpoint(kept / "checkpoints" / "best") == \
        kept / "checkpoints" / "step-000004"
    assert resolve_checkpoint(kept) == kept / "checkpoints" / "step-000010"  # the latest
    assert open_run(kept / "best").train_state["step"] == 4
    assert main(["translate", "--checkpoint", str(kept / "best"), "--beam-size", "1",
                 "--threads", "1", "march 3, 2001", "", "2 may 1999"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_run_best_without_best_json_names_the_run_and_what_to_do(tmp_path, scripted, capsys):
    scripted(KEEP)
    Trainer(tiny(tmp_path, max_steps=2, eval_every=2), log=None).fit()
    run = tmp_path / "run"
    assert not (run / "checkpoints" / BEST).exists()
    with pytest.raises(ValueError, match=r"has no best checkpoint .*: train with keep_best "
                                         r">= 1 and eval_every > 0"):
        resolve_checkpoint(run / "best")
    assert main(["translate", "--checkpoint", str(run / "best"), "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("attnkit translate: error:") and str(run / "best") in err
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        resolve_checkpoint(tmp_path / "nope" / "best")


def test_best_json_survives_a_resume_and_a_lower_keep_best_trims_it(kept, scripted):
    scripted(KEEP)
    cfg = tiny(kept.parent, max_steps=12, eval_every=2, keep_last=1, keep_best=1)
    t = Trainer(cfg, log=None)
    assert t.step == 10 and [e["step"] for e in t.best] == [4]
    assert [e["step"] for e in read_best(kept / "checkpoints")] == [4]
    t.fit()  # 12 (0.2) is no better than 4; 8 is no longer protected and goes
    assert names(kept) == ["step-000004", "step-000012"]
