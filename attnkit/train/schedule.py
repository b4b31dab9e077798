"""The learning-rate schedule of "Attention Is All You Need" (Vaswani et al., 2017, §5.3).

.. math::

    \\mathrm{lr}(s) = \\mathrm{scale} \\cdot d_{model}^{-0.5}
                     \\cdot \\min(s^{-0.5},\\; s \\cdot \\mathrm{warmup}^{-1.5})

for update number ``s = 1, 2, …``: a linear rise for ``warmup`` updates, a peak of
``scale * (d_model * warmup) ** -0.5`` at ``s == warmup`` (where the two branches
meet), then inverse-square-root decay. ``lr(0) = 0``, the value the linear branch
gives, so the function is defined and continuous for every ``s >= 0``.

:func:`noam_scheduler` wraps it in ``torch.optim.lr_scheduler.LambdaLR`` such that
the *k*-th ``optimizer.step()`` uses ``noam_lr(k)`` when the loop is the usual::

    optimizer.step(); scheduler.step()

(``LambdaLR`` counts from 0 before the first step; the factory shifts by one.)

A restored schedule (``load_state_dict``) brings back the factor it was saved with;
:func:`rescale` gives it another from the next step on, as a resumed run whose
``lr_scale`` changed needs.

Three more schedules give a peak rate ``lr`` directly (:func:`warmup_scheduler`). Each
rises linearly from ``warmup_init_lr`` (0 by default) at step 0 to ``lr`` at step
``warmup`` (``warmup = 1``: no warm-up), then

* ``inverse_sqrt`` (fairseq, eole): ``lr · sqrt(warmup / s)``;
* ``cosine``: ``min_lr + (lr − min_lr) · (1 + cos(π · (s − warmup) / (total_steps −
  warmup))) / 2``, and ``min_lr`` from ``total_steps`` on;
* ``plateau`` (JoeyNMT): ``lr``, multiplied by ``decrease_factor`` each time ``patience``
  validations in a row bring no better score (:func:`observe`), never below ``min_lr``.

Their callables keep every parameter and the plateau's progress (best score, validations
without a better one, factor) as plain numbers, so a checkpoint of the scheduler's
``state_dict()`` restores them, and ``scale`` multiplies each as ``lr_scale`` does noam.
"""

from __future__ import annotations

import math

import torch

from .._names import SCHEDULE_NAMES
from .._values import check_choice, check_finite, check_nonnegative_int, check_positive_int

__all__ = ["SCHEDULES", "CosineLambda", "InverseSqrtLambda", "NoamLambda", "PlateauLambda",
           "cosine_lr", "inverse_sqrt_lr", "noam_lr", "noam_scheduler", "observe", "rescale",
           "warmup_scheduler"]

#: the schedules a run chooses from (``[optim] schedule``)
SCHEDULES = SCHEDULE_NAMES


def _check(d_model: int, warmup: int, scale: float) -> None:
    check_positive_int("d_model", d_model)
    check_positive_int("warmup", warmup)
    check_finite("scale", scale, above=0)


def noam_lr(step: int, *, d_model: int, warmup: int, scale: float = 1.0) -> float:
    """Learning rate of update ``step`` (counted from 1; ``step == 0`` gives 0.0).

    Args:
        step: update number, an int >= 0.
        d_model: model width; the rate scales as ``d_model ** -0.5``.
        warmup: updates of linear warm-up; the peak is at ``step == warmup``.
        scale: overall factor (the paper uses 1.0).

    Raises:
        ValueError: on a negative step or non-positive ``d_model``/``warmup``/``scale``.
    """
    _check(d_model, warmup, scale)
    check_nonnegative_int("step", step)
    if step == 0:
        return 0.0
    return scale * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)


class NoamLambda:
    """Callable for ``LambdaLR``: ``epoch ↦ noam_lr(epoch + 1, …)``.

    A callable object (not a lambda) so that ``LambdaLR.state_dict()`` stores its
    parameters (``d_model``, ``warmup``, ``scale``) as plain numbers and
    ``load_state_dict`` restores them.
    """

    def __init__(self, *, d_model: int, warmup: int, scale: float = 1.0) -> None:
        _check(d_model, warmup, scale)
        self.d_model, self.warmup, self.scale = d_model, warmup, float(scale)

    def __call__(self, epoch: int) -> float:
        return noam_lr(int(epoch) + 1, d_model=self.d_model, warmup=self.warmup, scale=self.scale)


def _lambda_scheduler(optimizer, fn, rates: str) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR(optimizer, fn)`` once ``optimizer`` is checked to have ``lr = 1.0`` in every
    group: ``fn`` gives absolute rates (``rates`` names it in the message)."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    for i, group in enumerate(optimizer.param_groups):
        lr = group.get("initial_lr", group["lr"])
        if float(lr) != 1.0:
            raise ValueError(
                f"optimizer lr must be 1.0 in every param group ({rates} gives absolute "
                f"rates; use scale= to rescale), got lr={lr} in param group {i}"
            )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


def noam_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    d_model: int,
    warmup: int,
    scale: float = 1.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` applying :func:`noam_lr`; the *k*-th optimizer step uses ``noam_lr(k)``.

    ``LambdaLR`` multiplies each parameter group's initial ``lr`` by the lambda,
    so the optimizer must be created with ``lr=1.0``; use ``scale`` to change
    the rates. ``state_dict()`` holds only numbers (JSON-serializable).

    Raises:
        TypeError: if ``optimizer`` is not a ``torch.optim.Optimizer``.
        ValueError: if a parameter group's ``lr`` is not 1.0, or on bad arguments.
    """
    return _lambda_scheduler(optimizer, NoamLambda(d_model=d_model, warmup=warmup, scale=scale),
                             "noam_lr")


# ------------------------------------------------------------ schedules with a peak rate
def _check_peak(lr: float, warmup: int, warmup_init_lr: float) -> None:
    check_finite("lr", lr, above=0)
    check_positive_int("warmup", warmup)
    check_finite("warmup_init_lr", warmup_init_lr, minimum=0)


def _warming(step: int, lr: float, warmup: int, warmup_init_lr: float) -> float:
    """The linear rise from ``warmup_init_lr`` at step 0 to ``lr`` at step ``warmup``."""
    return warmup_init_lr + (lr - warmup_init_lr) * step / warmup


def inverse_sqrt_lr(step: int, *, lr: float, warmup: int, warmup_init_lr: float = 0.0) -> float:
    """The rate of update ``step`` (from 1; 0 gives ``warmup_init_lr``) under the inverse
    square root schedule: linear warm-up to ``lr`` at ``warmup``, then
    ``lr * sqrt(warmup / step)``."""
    _check_peak(lr, warmup, warmup_init_lr)
    check_nonnegative_int("step", step)
    if step <= warmup:
        return _warming(step, lr, warmup, warmup_init_lr)
    return lr * math.sqrt(warmup / step)


def cosine_lr(step: int, *, lr: float, warmup: int, total_steps: int, min_lr: float = 0.0,
              warmup_init_lr: float = 0.0) -> float:
    """The rate of update ``step`` under cosine decay: linear warm-up to ``lr`` at
    ``warmup``, half a cosine down to ``min_lr`` at ``total_steps``, ``min_lr`` after."""
    _check_peak(lr, warmup, warmup_init_lr)
    check_nonnegative_int("step", step)
    _check_floor(min_lr, lr)
    _check_horizon(total_steps, warmup)
    if step <= warmup:
        return _warming(step, lr, warmup, warmup_init_lr)
    if step >= total_steps:
        return min_lr
    progress = (step - warmup) / (total_steps - warmup)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _check_floor(min_lr: float, lr: float) -> None:
    check_finite("min_lr", min_lr, minimum=0, maximum=lr)


def _check_horizon(total_steps: int, warmup: int) -> None:
    """``total_steps`` an int beyond ``warmup``: the cosine needs steps to decay over."""
    check_positive_int("total_steps", total_steps)
    if total_steps <= warmup:
        raise ValueError(f"total_steps must be an int > warmup = {warmup}; got {total_steps}")


class _PeakLambda:
    """Base of the callables for ``LambdaLR`` whose schedule has a peak rate ``lr``:
    ``epoch ↦ scale · rate(epoch + 1)``; the attributes are the state ``LambdaLR`` saves."""

    def __init__(self, *, lr: float, warmup: int, warmup_init_lr: float = 0.0,
                 scale: float = 1.0) -> None:
        _check_peak(lr, warmup, warmup_init_lr)
        check_finite("scale", scale, above=0)
        self.lr, self.warmup, self.warmup_init_lr = float(lr), warmup, float(warmup_init_lr)
        self.scale = float(scale)

    def rate(self, step: int) -> float:  # pragma: no cover - each schedule has its own
        raise NotImplementedError

    def __call__(self, epoch: int) -> float:
        return self.scale * self.rate(int(epoch) + 1)


class InverseSqrtLambda(_PeakLambda):
    """:func:`inverse_sqrt_lr` for ``LambdaLR``."""

    def rate(self, step: int) -> float:
        return inverse_sqrt_lr(step, lr=self.lr, warmup=self.warmup,
                               warmup_init_lr=self.warmup_init_lr)


class CosineLambda(_PeakLambda):
    """:func:`cosine_lr` for ``LambdaLR``."""

    def __init__(self, *, total_steps: int, min_lr: float = 0.0, **peak) -> None:
        super().__init__(**peak)
        _check_horizon(total_steps, self.warmup)
        _check_floor(min_lr, self.lr)
        self.total_steps, self.min_lr = total_steps, float(min_lr)

    def rate(self, step: int) -> float:
        return cosine_lr(step, lr=self.lr, warmup=self.warmup, total_steps=self.total_steps,
                         min_lr=self.min_lr, warmup_init_lr=self.warmup_init_lr)


class PlateauLambda(_PeakLambda):
    """``lr`` after the warm-up, times ``factor``: :func:`observe` multiplies ``factor`` by
    ``decrease_factor`` once ``patience`` validations in a row bring no score above
    ``best`` (higher is better), and then counts again; the rate stays at ``min_lr`` or
    above. ``seen_step`` is the step of the last score taken, so a second validation of
    the same step (a run's final one) is not counted twice."""

    def __init__(self, *, min_lr: float = 0.0, decrease_factor: float = 0.5,
                 patience: int = 5, **peak) -> None:
        super().__init__(**peak)
        _check_floor(min_lr, self.lr)
        check_finite("decrease_factor", decrease_factor, above=0, below=1)
        check_positive_int("patience", patience)
        self.min_lr, self.decrease_factor = float(min_lr), float(decrease_factor)
        self.patience = patience
        self.best: float | None = None
        self.bad, self.factor, self.seen_step = 0, 1.0, -1

    def rate(self, step: int) -> float:
        peak = max(self.lr * self.factor, self.min_lr)
        if step < self.warmup:
            return _warming(step, peak, self.warmup, self.warmup_init_lr)
        return peak

    def take(self, score: float, step: int) -> bool:
        """Count validation ``score`` of ``step``; whether the factor was lowered."""
        if step == self.seen_step or not math.isfinite(score):
            return False
        self.seen_step = step
        if self.best is None or score > self.best:
            self.best, self.bad = float(score), 0
            return False
        self.bad += 1
        if self.bad < self.patience or self.lr * self.factor <= self.min_lr:
            return False
        self.factor *= self.decrease_factor
        self.bad = 0
        return True


_PEAK_LAMBDAS = {"inverse_sqrt": InverseSqrtLambda, "cosine": CosineLambda,
                 "plateau": PlateauLambda}


def warmup_scheduler(optimizer: torch.optim.Optimizer, schedule: str, *, lr: float,
                     warmup: int, scale: float = 1.0, **params
                     ) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` applying ``schedule`` (``inverse_sqrt``, ``cosine``, ``plateau``): the
    *k*-th optimizer step uses the schedule's rate of step *k*, times ``scale``.
    ``params``: ``warmup_init_lr``; ``total_steps`` and ``min_lr`` (cosine); ``min_lr``,
    ``decrease_factor`` and ``patience`` (plateau). The optimizer's ``lr`` must be 1.0.

    Raises:
        TypeError: if ``optimizer`` is not a ``torch.optim.Optimizer`` or a parameter
            does not belong to ``schedule``.
        ValueError: an unknown schedule, a group ``lr`` other than 1.0, or a bad value.
    """
    check_choice("schedule", schedule, tuple(_PEAK_LAMBDAS))
    fn = _PEAK_LAMBDAS[schedule](lr=lr, warmup=warmup, scale=scale, **params)
    return _lambda_scheduler(optimizer, fn, f"the {schedule} schedule")


def _peak_lambdas(scheduler) -> list:
    lambdas = getattr(scheduler, "lr_lambdas", None)
    if not lambdas or not all(isinstance(fn, (NoamLambda, _PeakLambda)) for fn in lambdas):
        raise ValueError("rescale needs a scheduler made by noam_scheduler or "
                         "warmup_scheduler")
    return lambdas


def _refresh(scheduler: torch.optim.lr_scheduler.LambdaLR) -> None:
    """Set the optimizer's rates to what the schedule's lambdas now give (the groups'
    ``lr`` were set when the schedule last stepped), as ``get_last_lr()`` reports them."""
    groups = scheduler.optimizer.param_groups
    for fn, group, base in zip(scheduler.lr_lambdas, groups, scheduler.base_lrs):
        group["lr"] = base * fn(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in groups]  # what get_last_lr() reports


def rescale(scheduler: torch.optim.lr_scheduler.LambdaLR, scale: float) -> float | None:
    """Give a :func:`noam_scheduler` (or :func:`warmup_scheduler`) the factor ``scale``
    from its next step on.

    The optimizer's next step uses ``noam_lr(k, scale=scale)`` at once (its groups'
    ``lr`` were set with the old factor when the schedule last stepped). Returns the
    factor the schedule had, or ``None`` when it was ``scale`` already.

    Raises:
        ValueError: on a bad ``scale``, or a scheduler whose lambdas are not
            :class:`NoamLambda` or those of :func:`warmup_scheduler`.
    """
    lambdas = _peak_lambdas(scheduler)
    check_finite("scale", scale, above=0)
    before = lambdas[0].scale
    if all(fn.scale == float(scale) for fn in lambdas):
        return None
    for fn in lambdas:
        fn.scale = float(scale)
    _refresh(scheduler)
    return before


def observe(scheduler: torch.optim.lr_scheduler.LambdaLR, score: float, step: int
            ) -> float | None:
    """Give a ``plateau`` schedule the validation score of ``step`` (higher is better).
    Returns the rate of the next step when the score lowered it, else ``None`` (also for
    every other schedule, which no score changes)."""
    lambdas = getattr(scheduler, "lr_lambdas", [])
    plateaus = [fn for fn in lambdas if isinstance(fn, PlateauLambda)]
    lowered = False
    for fn in dict.fromkeys(plateaus):  # one callable serves every group as a rule
        lowered = fn.take(score, step) or lowered
    if not lowered:
        return None
    _refresh(scheduler)
    return scheduler.get_last_lr()[0]
