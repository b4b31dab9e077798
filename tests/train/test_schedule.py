"""Tests for attnkit.train.schedule: the Noam learning-rate schedule."""

from __future__ import annotations

import json
import math

import pytest
import torch

from attnkit.train.schedule import noam_lr, noam_scheduler, rescale


def test_hand_computed_values():
    # d_model = 512, warmup = 4000 (the paper's base model)
    assert noam_lr(0, d_model=512, warmup=4000) == 0.0
    assert noam_lr(1, d_model=512, warmup=4000) == pytest.approx(512**-0.5 * 4000**-1.5)
    assert noam_lr(4000, d_model=512, warmup=4000) == pytest.approx(0.000698771242, rel=1e-9)
    assert noam_lr(16000, d_model=512, warmup=4000) == pytest.approx(512**-0.5 / math.sqrt(16000))
    # d_model = 4, warmup = 4, scale = 2: 2 * 0.5 * min(s^-0.5, s / 8)
    expected = [0.0, 0.125, 0.25, 0.375, 0.5, 1 / math.sqrt(5), 1 / math.sqrt(6)]
    got = [noam_lr(s, d_model=4, warmup=4, scale=2.0) for s in range(7)]
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("d_model", "warmup", "scale"), [(512, 4000, 1.0), (128, 37, 0.5)])
def test_peak_rise_and_decay(d_model, warmup, scale):
    lr = [noam_lr(s, d_model=d_model, warmup=warmup, scale=scale) for s in range(3 * warmup)]
    peak = max(range(len(lr)), key=lr.__getitem__)
    assert peak == warmup
    assert lr[warmup] == pytest.approx(scale * (d_model * warmup) ** -0.5, rel=1e-12)
    # linear rise: lr(s) = s * lr(1) up to the peak
    for s in range(1, warmup + 1):
        assert lr[s] == pytest.approx(s * lr[1], rel=1e-12)
    # inverse-square-root decay after it: lr(s) * sqrt(s) constant
    for s in range(warmup, 3 * warmup):
        assert lr[s] * math.sqrt(s) == pytest.approx(lr[warmup] * math.sqrt(warmup), rel=1e-12)


def test_scheduler_gives_noam_lr_k_to_the_kth_step():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = noam_scheduler(opt, d_model=16, warmup=5, scale=3.0)
    used = []
    for _ in range(12):
        used.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert used == pytest.approx(
        [noam_lr(k, d_model=16, warmup=5, scale=3.0) for k in range(1, 13)], rel=1e-12
    )


def test_scheduler_state_dict_round_trips_through_json():
    def make():
        opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
        return opt, noam_scheduler(opt, d_model=64, warmup=10, scale=0.7)

    opt, sched = make()
    for _ in range(7):
        opt.step()
        sched.step()
    state = json.loads(json.dumps(sched.state_dict()))  # numbers only
    assert state["lr_lambdas"] == [{"d_model": 64, "warmup": 10, "scale": 0.7}]

    opt2 = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    sched2 = noam_scheduler(opt2, d_model=1, warmup=1, scale=1.0)  # overwritten by load
    sched2.load_state_dict(state)
    opt2.param_groups[0]["lr"] = sched2.get_last_lr()[0]
    for _ in range(5):
        opt.step(), sched.step()
        opt2.step(), sched2.step()
        assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert sched2.lr_lambdas[0].d_model == 64


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="step must be a non-negative int; got -1"):
        noam_lr(-1, d_model=8, warmup=4)
    with pytest.raises(ValueError, match="warmup must be a positive int; got 0"):
        noam_lr(1, d_model=8, warmup=0)
    with pytest.raises(ValueError, match="d_model must be a positive int; got 0"):
        noam_lr(1, d_model=0, warmup=4)
    with pytest.raises(ValueError, match="scale must be a finite number > 0; got -1.0"):
        noam_lr(1, d_model=8, warmup=4, scale=-1.0)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    with pytest.raises(ValueError, match="lr must be 1.0 .* got lr=0.001 in param group 0"):
        noam_scheduler(opt, d_model=8, warmup=4)
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer, got list"):
        noam_scheduler([], d_model=8, warmup=4)


def test_rescale_gives_a_restored_schedule_the_new_factor_from_its_next_step():
    def made(scale):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        return opt, noam_scheduler(opt, d_model=16, warmup=10, scale=scale)

    opt, sched = made(1.0)
    for _ in range(3):
        opt.step()
        sched.step()
    opt2, sched2 = made(0.5)  # built with the new factor, then restored: the old one is back
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(json.loads(json.dumps(sched.state_dict())))
    assert opt2.param_groups[0]["lr"] == pytest.approx(noam_lr(4, d_model=16, warmup=10))
    assert rescale(sched2, 0.5) == 1.0
    assert opt2.param_groups[0]["lr"] == pytest.approx(noam_lr(4, d_model=16, warmup=10,
                                                               scale=0.5))
    assert sched2.get_last_lr() == [opt2.param_groups[0]["lr"]]
    opt2.step()
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(noam_lr(5, d_model=16, warmup=10,
                                                               scale=0.5))
    assert rescale(sched2, 0.5) is None  # unchanged: nothing to say
    with pytest.raises(ValueError, match=r"scale must be a finite number > 0; got nan"):
        rescale(sched2, float("nan"))
    lambda_lr = torch.optim.lr_scheduler.LambdaLR(opt2, lambda s: 1.0)
    with pytest.raises(ValueError, match=r"rescale needs a scheduler made by noam_scheduler"):
        rescale(lambda_lr, 0.5)
