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
"""

from __future__ import annotations

import torch

from .._values import check_finite, check_nonnegative_int, check_positive_int

__all__ = ["NoamLambda", "noam_lr", "noam_scheduler", "rescale"]


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
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    for i, group in enumerate(optimizer.param_groups):
        lr = group.get("initial_lr", group["lr"])
        if float(lr) != 1.0:
            raise ValueError(
                f"optimizer lr must be 1.0 in every param group (noam_lr gives absolute "
                f"rates; use scale= to rescale), got lr={lr} in param group {i}"
            )
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, NoamLambda(d_model=d_model, warmup=warmup, scale=scale)
    )


def rescale(scheduler: torch.optim.lr_scheduler.LambdaLR, scale: float) -> float | None:
    """Give a :func:`noam_scheduler` the factor ``scale`` from its next step on.

    The optimizer's next step uses ``noam_lr(k, scale=scale)`` at once (its groups'
    ``lr`` were set with the old factor when the schedule last stepped). Returns the
    factor the schedule had, or ``None`` when it was ``scale`` already.

    Raises:
        ValueError: on a bad ``scale``, or a scheduler whose lambdas are not
            :class:`NoamLambda`.
    """
    lambdas = scheduler.lr_lambdas
    if not all(isinstance(fn, NoamLambda) for fn in lambdas):
        raise ValueError("rescale needs a scheduler made by noam_scheduler")
    _check(lambdas[0].d_model, lambdas[0].warmup, scale)
    before = lambdas[0].scale
    if all(fn.scale == float(scale) for fn in lambdas):
        return None
    groups = scheduler.optimizer.param_groups
    for fn, group, base in zip(lambdas, groups, scheduler.base_lrs):
        fn.scale = float(scale)
        group["lr"] = base * fn(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in groups]  # what get_last_lr() reports
    return before
