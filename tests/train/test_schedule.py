"""Tests for attnkit.train.schedule: the Noam learning-rate schedule."""

from __future__ import annotations

import json
import math

import pytest
import torch

from attnkit.train.schedule import (
    cosine_lr,
    inverse_sqrt_lr,
    noam_lr,
    noam_scheduler,
    observe,
    rescale,
    warmup_scheduler,
)


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


# ------------------------------------------------------------ schedules with a peak rate
def rates(schedule, steps, **kw):
    """The rate each of ``steps`` optimizer steps uses under ``warmup_scheduler``."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_scheduler(opt, schedule, **kw)
    used = []
    for _ in range(steps):
        used.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return used


def test_inverse_sqrt_warms_up_linearly_then_decays_as_one_over_the_root():
    # lr = 0.01, warmup = 4, from warmup_init_lr = 0.002: steps 1..4 rise by 0.002 each
    assert [inverse_sqrt_lr(s, lr=0.01, warmup=4, warmup_init_lr=0.002) for s in range(5)] == \
        pytest.approx([0.002, 0.004, 0.006, 0.008, 0.01], rel=1e-12)
    assert inverse_sqrt_lr(16, lr=0.01, warmup=4) == pytest.approx(0.005, rel=1e-12)
    assert inverse_sqrt_lr(9, lr=0.01, warmup=4) == pytest.approx(0.01 * 2 / 3, rel=1e-12)
    assert inverse_sqrt_lr(2, lr=0.01, warmup=4) == pytest.approx(0.005, rel=1e-12)  # from 0
    # the k-th step of the scheduler uses the rate of step k, times scale
    assert rates("inverse_sqrt", 10, lr=0.01, warmup=4, scale=0.5) == pytest.approx(
        [0.5 * inverse_sqrt_lr(k, lr=0.01, warmup=4) for k in range(1, 11)], rel=1e-12)


def test_cosine_decays_to_min_lr_at_total_steps_and_stays_there():
    kw = dict(lr=0.1, warmup=2, total_steps=10, min_lr=0.02)
    assert cosine_lr(1, **kw) == pytest.approx(0.05, rel=1e-12)
    assert cosine_lr(2, **kw) == pytest.approx(0.1, rel=1e-12)
    assert cosine_lr(6, **kw) == pytest.approx(0.02 + 0.08 * 0.5, rel=1e-12)  # halfway
    assert cosine_lr(4, **kw) == pytest.approx(0.02 + 0.08 * 0.5 * (1 + math.cos(math.pi / 4)),
                                               rel=1e-12)
    assert [cosine_lr(s, **kw) for s in (10, 11, 1000)] == [0.02, 0.02, 0.02]
    assert rates("cosine", 12, **kw) == pytest.approx(
        [cosine_lr(k, **kw) for k in range(1, 13)], rel=1e-12)


def plateau(**kw):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return opt, warmup_scheduler(opt, "plateau", **{"lr": 0.1, "warmup": 1, **kw})


def test_plateau_lowers_the_rate_after_patience_validations_without_a_better_score():
    opt, sched = plateau(decrease_factor=0.5, patience=2, min_lr=0.02)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    said = [observe(sched, score, step) for step, score in
            enumerate([1.0, 2.0, 2.0, 1.5, 3.0, 3.0, 3.0, 0.0, 0.0, 0.0, 0.0], start=1)]
    # 2.0 and 1.5 are no better than 2.0: lowered at the 4th; 3.0 is better, then two
    # that are not: lowered at the 7th; then the floor 0.02 holds (0.025 -> 0.02)
    assert said == [None, None, None, pytest.approx(0.05), None, None, pytest.approx(0.025),
                    None, pytest.approx(0.02), None, None]
    assert opt.param_groups[0]["lr"] == sched.get_last_lr()[0] == pytest.approx(0.02)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.02)  # stepping keeps the factor


def test_plateau_counts_one_score_per_step_and_skips_non_finite_ones():
    opt, sched = plateau(patience=1)
    observe(sched, 1.0, 5)
    assert observe(sched, 0.5, 5) is None  # the same step again: a final validation
    assert observe(sched, math.nan, 6) is None
    assert observe(sched, 0.5, 7) == pytest.approx(0.05)


def test_plateau_state_survives_a_checkpoint_and_the_restored_one_goes_on_alike():
    opt, sched = plateau(decrease_factor=0.5, patience=2, warmup=3)
    for step, score in enumerate([1.0, 0.5, 0.4, 2.0, 1.0], start=1):
        opt.step()
        sched.step()
        observe(sched, score, step)
    state = json.loads(json.dumps(sched.state_dict()))  # numbers only
    saved = state["lr_lambdas"][0]
    assert (saved["lr"], saved["best"], saved["bad"], saved["factor"]) == (0.1, 2.0, 1, 0.5)
    opt2, sched2 = plateau(decrease_factor=0.9, patience=7)  # overwritten by the load
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(state)
    for step, score in enumerate([1.5, 1.0, 3.0, 0.0], start=6):
        assert observe(sched2, score, step) == observe(sched, score, step)
        opt.step(), sched.step()
        opt2.step(), sched2.step()
        assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert sched2.lr_lambdas[0].factor == 0.25


def test_observe_leaves_every_other_schedule_alone():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = noam_scheduler(opt, d_model=16, warmup=4)
    assert [observe(sched, 0.0, s) for s in range(1, 6)] == [None] * 5
    assert opt.param_groups[0]["lr"] == noam_lr(1, d_model=16, warmup=4)


def test_rescale_scales_the_schedules_with_a_peak_rate_too():
    opt, sched = plateau(warmup=4)
    assert rescale(sched, 0.5) == 1.0
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5 * 0.1 / 4)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: inverse_sqrt_lr(1, lr=-0.1, warmup=4), r"lr must be a finite number > 0; got -0.1"),
    (lambda: inverse_sqrt_lr(1, lr=math.nan, warmup=4), r"lr must be .*; got nan"),
    (lambda: inverse_sqrt_lr(1, lr="0.1", warmup=4), r"lr must be .*; got '0.1'"),
    (lambda: inverse_sqrt_lr(-1, lr=0.1, warmup=4), r"step must be a non-negative int; got -1"),
    (lambda: cosine_lr(1, lr=0.1, warmup=4, total_steps=4),
     r"total_steps must be an int > warmup = 4; got 4"),
    (lambda: cosine_lr(1, lr=0.1, warmup=4, total_steps=9, min_lr=0.2),
     r"min_lr must be a number in \[0, 0.1\]; got 0.2"),
    (lambda: plateau(decrease_factor=1.0), r"decrease_factor must be a number in \(0, 1\); got 1"),
    (lambda: plateau(patience=0), r"patience must be a positive int; got 0"),
    (lambda: plateau(warmup_init_lr=-1.0), r"warmup_init_lr must be a finite number >= 0"),
    (lambda: warmup_scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0),
                              "cosin", lr=0.1, warmup=1, total_steps=5),
     r"schedule must be one of 'inverse_sqrt', 'cosine', 'plateau'; got 'cosin' "
     r"\(did you mean 'cosine'\?\)"),
    (lambda: warmup_scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1),
                              "inverse_sqrt", lr=0.1, warmup=1),
     r"lr must be 1.0 .*inverse_sqrt schedule.* got lr=0.1 in param group 0"),
])
def test_the_peak_schedules_refuse_bad_arguments_naming_them(call, message):
    with pytest.raises(ValueError, match=message):
        call()
