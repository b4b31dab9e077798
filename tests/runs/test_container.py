"""Tests for attnkit.runs.container: exact round trips, resumption, atomicity, no pickle;
with the averaging of .run. Which checkpoints a run keeps is tested in test_retention.py."""

from __future__ import annotations

import json
import math
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from attnkit.data.batching import BatchingConfig, BucketBatcher
from attnkit.data.tokenizer import CharTokenizer, load_tokenizer
from attnkit.runs import (
    average_checkpoints,
    latest_checkpoint,
    load_checkpoint,
    read_model_state,
    save_checkpoint,
)
from attnkit.train.schedule import noam_scheduler

from ._helpers import make_model, save_at


def make_opt(model: nn.Module):
    opt = torch.optim.Adam(model.parameters(), lr=1.0, betas=(0.9, 0.98), eps=1e-9)
    return opt, noam_scheduler(opt, d_model=16, warmup=4, scale=0.5)


def adam_steps(model, opt, sched, n: int) -> None:
    for _ in range(n):
        x = torch.randn(5, 7)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def draws() -> tuple:
    return random.random(), float(np.random.rand()), torch.rand(4).tolist()


def assert_same_state(a, b) -> None:
    """Recursive bitwise equality of nested state dicts."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same_state(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same_state(x, y)
    else:
        assert a == b


def test_round_trip_is_bitwise(tmp_path):
    model = make_model(0)
    opt, sched = make_opt(model)
    adam_steps(model, opt, sched, 6)
    tok = CharTokenizer("0123456789-")
    path = save_checkpoint(
        tmp_path, model=model, optimizer=opt, scheduler=sched,
        config={"d_model": 16, "layers": [1, 2]}, train_state={"step": 6, "epoch": 0},
        tokenizer=tok,
    )  # fmt: skip
    assert path == tmp_path / "step-000006"
    expected_draws = draws()

    random.seed(1), np.random.seed(1), torch.manual_seed(1)  # scramble the RNGs
    model2 = make_model(1)
    opt2, sched2 = make_opt(model2)
    adam_steps(model2, opt2, sched2, 2)
    info = load_checkpoint(path, model=model2, optimizer=opt2, scheduler=sched2)

    assert info["train_state"] == {"step": 6, "epoch": 0} and info["step"] == 6
    assert info["config"] == {"d_model": 16, "layers": [1, 2]}
    assert load_tokenizer(path / "tokenizer") == tok  # the tokenizer's files round-trip
    assert_same_state(model.state_dict(), model2.state_dict())
    assert_same_state(opt.state_dict(), opt2.state_dict())  # betas stay a tuple
    assert sched.state_dict() == sched2.state_dict()
    assert draws() == expected_draws


def train_run(
    root: Path, total: int, *, stop_at: int | None = None, resume: bool = False, rng: bool = True
):
    """A small training loop with dropout, noise, a noam schedule and a token batcher."""
    random.seed(0), np.random.seed(0)
    model = make_model(1 if resume else 0)  # a resumed run starts from other weights
    opt, sched = make_opt(model)
    gen = torch.Generator().manual_seed(3)
    features = torch.randn(60, 7, generator=gen)
    targets = torch.randn(60, 3, generator=gen)
    examples = [([4] * (i % 9), [5] * (1 + i % 5)) for i in range(60)]
    batcher = BucketBatcher(examples, BatchingConfig(max_tokens=40, seed=7))
    step = 0
    if resume:
        info = load_checkpoint(
            latest_checkpoint(root), model=model, optimizer=opt, scheduler=sched, restore_rng=rng
        )
        step = info["train_state"]["step"]
        batcher.load_state_dict(info["train_state"]["data"])
    while step < total:
        for batch in batcher:
            rows = list(batch.indices)
            x = features[rows] + 0.1 * torch.randn(len(rows), 7)  # global RNG
            if len(rows) < 2:  # BatchNorm needs two rows; python RNG picks a partner
                rows.append(random.randrange(60))
                x = torch.cat([x, features[rows[-1:]]])
            loss = (model(x) - targets[rows]).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step == stop_at:
                state = {"step": step, "data": batcher.state_dict()}
                save_checkpoint(root, model=model, optimizer=opt, scheduler=sched,
                                config={}, train_state=state)  # fmt: skip
                return model
            if step == total:
                break
    return model


def test_interrupted_training_resumes_bitwise(tmp_path):
    total = 23  # several epochs of the batcher
    reference = train_run(tmp_path / "a", total)
    train_run(tmp_path / "b", total, stop_at=9)  # "killed" after step 9
    random.seed(5), torch.manual_seed(5)  # whatever the new process does first
    resumed = train_run(tmp_path / "b", total, resume=True)
    assert_same_state(reference.state_dict(), resumed.state_dict())
    # the check has teeth: without the RNG states the resumed run drifts
    random.seed(5), torch.manual_seed(5)
    drifted = train_run(tmp_path / "b", total, resume=True, rng=False)
    assert not torch.equal(drifted[0].weight, reference[0].weight)


def test_average_is_the_arithmetic_mean(tmp_path):
    paths, states = [], []
    for i in range(3):
        model = make_model(10 + i)
        model[1].num_batches_tracked.fill_(100 + i)
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        paths.append(save_at(tmp_path, model, i))
    avg = average_checkpoints(paths)
    assert avg.keys() == states[0].keys()
    for k, v in avg.items():
        if v.is_floating_point():
            exact = (sum(s[k].double() for s in states) / 3).float()
            assert torch.equal(v, exact)
            torch.testing.assert_close(v, torch.stack([s[k] for s in states]).mean(0))
        else:
            assert torch.equal(v, states[-1][k])  # integer buffers from the last
    assert int(avg["1.num_batches_tracked"]) == 102
    assert torch.equal(average_checkpoints(paths[:1])["0.weight"], states[0]["0.weight"])


def test_incompatible_checkpoint_lists_keys_and_shapes(tmp_path):
    path = save_at(tmp_path, make_model(0), 1)
    other = nn.Sequential(nn.Linear(7, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Dropout(0.2))
    with pytest.raises(ValueError) as err:
        load_checkpoint(path, model=other)
    msg = str(err.value)
    assert "unexpected keys ['4.bias', '4.weight']" in msg
    assert "0.weight: checkpoint" in msg and "(11, 7) vs expected (12, 7)" in msg
    bigger = nn.Sequential(*make_model(0), nn.Linear(3, 2))
    with pytest.raises(ValueError, match=r"missing keys \['5.bias', '5.weight'\]"):
        load_checkpoint(path, model=bigger)
    small = tmp_path / "small"
    with pytest.raises(ValueError, match="incompatible"):
        average_checkpoints([path, save_at(small, other, 1)])
    with pytest.raises(ValueError, match="optimizer was given but checkpoint"):
        load_checkpoint(path, model=make_model(0), optimizer=make_opt(make_model(0))[0])


def test_corrupt_file_is_detected(tmp_path):
    path = save_at(tmp_path, make_model(0), 1)
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"is corrupt: model.safetensors \(size or sha256"):
        read_model_state(path)


def test_no_pickle_anywhere(tmp_path, monkeypatch):
    model = make_model(0)
    opt, sched = make_opt(model)
    adam_steps(model, opt, sched, 2)
    path = save_checkpoint(tmp_path, model=model, optimizer=opt, scheduler=sched, config={},
                           train_state={"step": 2}, tokenizer=CharTokenizer("ab"))  # fmt: skip
    files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    assert files == [
        "config.json", "manifest.json", "model.safetensors", "state.json",
        "state.safetensors", "tokenizer/tokenizer.json", "train_state.json",
    ]  # fmt: skip
    for name in files:
        raw = (path / name).read_bytes()
        if name.endswith(".json"):
            json.loads(raw)
        else:  # safetensors: u64 header length, then a JSON header
            n = int.from_bytes(raw[:8], "little")
            json.loads(raw[8 : 8 + n])
        assert not raw.startswith(b"\x80")  # pickle protocol marker

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle-based loading was used")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    model2 = make_model(1)
    opt2, sched2 = make_opt(model2)
    load_checkpoint(path, model=model2, optimizer=opt2, scheduler=sched2)
    assert_same_state(model.state_dict(), model2.state_dict())


def test_argument_errors(tmp_path):
    model = make_model(0)
    with pytest.raises(ValueError,
                       match=r"train_state\['step'\] must be a non-negative int; got None"):
        save_checkpoint(tmp_path, model=model, optimizer=None, scheduler=None, config={},
                        train_state={"epoch": 1})  # fmt: skip
    with pytest.raises(TypeError, match="config must be JSON-serializable"):
        save_checkpoint(tmp_path, model=model, optimizer=None, scheduler=None,
                        config={"x": object()}, train_state={"step": 1})  # fmt: skip
    with pytest.raises(ValueError, match="keep_last must be a positive int; got 0"):
        save_at(tmp_path, model, 1, keep_last=0)
    with pytest.raises(ValueError, match="paths must name at least one checkpoint"):
        average_checkpoints([])


class OddState:
    """A 'scheduler' whose state exercises every JSON marker of the format."""

    def __init__(self, state=None):
        self.state = state

    def state_dict(self):
        return self.state

    def load_state_dict(self, state):
        self.state = state


def test_awkward_states_round_trip(tmp_path):
    state = {
        "__tensor__": "not a reference",  # looks like a marker, must stay a string
        "nested": ({"a": (1, 2.5)}, [None, True, "x"]),
        "int_keys": {0: torch.arange(3), 7: {"t": torch.tensor(1.5, dtype=torch.float64)}},
        "floats": [float("nan"), float("inf"), -float("inf"), 1e-310],
        "array": np.arange(5, dtype=np.uint32),
        "empty": torch.zeros(0, 4),
    }
    path = save_checkpoint(
        tmp_path, model=make_model(0), optimizer=None, scheduler=OddState(state),
        config={}, train_state={"step": 0},
    )  # fmt: skip
    back = OddState()
    load_checkpoint(path, model=make_model(0), scheduler=back)
    got = back.state
    assert got["__tensor__"] == "not a reference"
    assert got["nested"] == ({"a": (1, 2.5)}, [None, True, "x"])
    assert torch.equal(got["int_keys"][0], torch.arange(3))
    assert_same_state(got["int_keys"][7], state["int_keys"][7])
    assert math.isnan(got["floats"][0]) and got["floats"][1:] == [math.inf, -math.inf, 1e-310]
    assert got["array"].dtype == np.uint32 and got["array"].tolist() == [0, 1, 2, 3, 4]
    assert got["empty"].shape == (0, 4)
