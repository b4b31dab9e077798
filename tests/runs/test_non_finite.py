"""Non-finite weights and scores in the run format: the writer refuses them before it
rotates anything, every reader refuses them naming the checkpoint and the tensor, and
best.json ranks finite scores only."""

import math
import re

import pytest
import torch

from attnkit.runs import (
    Run,
    average_checkpoints,
    container,
    load_checkpoint,
    read_best,
    read_model_state,
    record_best,
)

from ._helpers import make_model, save_at


def poisoned(seed: int, value: float, count: int = 2) -> torch.nn.Module:
    """:func:`make_model` with ``count`` entries of its first weight set to ``value``."""
    model = make_model(seed)
    with torch.no_grad():
        model[0].weight.view(-1)[:count] = value
    return model


@pytest.mark.parametrize("value, said", [(math.nan, "2 NaN"), (-math.inf, "2 inf")])
def test_the_writer_refuses_non_finite_weights_before_rotating(tmp_path, value, said):
    for step in (1, 2):
        save_at(tmp_path, make_model(step), step, keep_last=2)
    with pytest.raises(ValueError, match=rf"^refusing to write checkpoint step 3: the model "
                                         rf"has non-finite weights \(0\.weight: {said} of 77\)$"):
        save_at(tmp_path, poisoned(3, value), 3, keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000001", "step-000002"]


@pytest.fixture
def nan_checkpoint(tmp_path, monkeypatch):
    """A checkpoint whose ``0.weight`` holds 2 NaN, written with the writer's check off,
    manifest and all (as a release without that check wrote it)."""
    with monkeypatch.context() as m:
        m.setattr(container, "first_non_finite", lambda tensors: None, raising=False)
        return save_at(tmp_path, poisoned(1, math.nan), 1)


def opened(path) -> Run:
    """The :class:`Run` of checkpoint ``path`` (verified already; its description is not
    read: these checkpoints hold a model of no run)."""
    return Run(path=path, format_version=2, model=None, tokenizer={}, train=None,
               train_state={"step": 1}, description={})


@pytest.mark.parametrize("read", [
    lambda p: load_checkpoint(p, model=make_model(0)),
    lambda p: opened(p).restore(make_model(0)),
    lambda p: opened(p).weights(),
    read_model_state,
    lambda p: average_checkpoints([p]),
], ids=["load_checkpoint", "Run.restore", "Run.weights", "read_model_state", "average"])
def test_every_reader_refuses_non_finite_weights_naming_the_tensor(nan_checkpoint, read):
    with pytest.raises(ValueError) as e:
        read(nan_checkpoint)
    assert str(e.value) == (f"checkpoint {nan_checkpoint} has non-finite weights (0.weight: "
                            "2 NaN of 77); it cannot be used (the training that wrote it had "
                            "diverged)")


def test_a_model_refused_keeps_its_own_weights(nan_checkpoint):
    model = make_model(5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="non-finite weights"):
        load_checkpoint(nan_checkpoint, model=model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("score", [math.nan, math.inf, -math.inf, "0.5", None, True])
def test_best_json_ranks_finite_scores_only(tmp_path, score):
    for step in (1, 2):
        save_at(tmp_path, make_model(step), step)
    record_best(tmp_path, {"step": 1, "score": 0.5, "metric": "val_bleu"}, keep_best=2)
    with pytest.raises(ValueError, match=rf"^record_best: the score of step 2 \(ranked in "
                                         rf"best\.json\) must be a finite number; got "
                                         rf"{re.escape(repr(score))}$"):
        record_best(tmp_path, {"step": 2, "score": score, "metric": "val_bleu"}, keep_best=2)
    assert read_best(tmp_path) == [{"step": 1, "score": 0.5, "metric": "val_bleu"}]
