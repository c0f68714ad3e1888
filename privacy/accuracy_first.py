"""Accuracy-first: the smallest cost whose OpenDP accuracy meets a target ``max_error``.

The search runs on public metadata only: OpenDP's ``accuracy_to_*_scale`` gives
the noise scale for ``max_error`` at ``alpha``, OpenDP's privacy map at that
scale the loss, and the cost is that loss rounded up to
:data:`~privacy.amount.COST_SIGNIFICANT_DIGITS` significant digits
(:meth:`~privacy.amount.PrivacyAmount.rounded_up`), raised a step at a time
(:meth:`~privacy.amount.PrivacyAmount.step_up`) until the measurement compiled
at that cost meets the target by OpenDP's ``summarize``. The search itself
releases nothing: only the cost it finds is debited and spent.
"""

from __future__ import annotations

from decimal import Decimal

import opendp.prelude as dp

from privacy.amount import PrivacyAmount
from privacy.errors import InvalidQuery
from privacy.measurement import MeasurementBuilder
from privacy.query import AccuracyTarget

MAX_ACCURACY_FIRST_COST = Decimal(10_000)
"""Accuracy targets that would cost more than this (ε or ρ) are refused."""
_STEPS_UP = 16


def check_cost_limit(target: AccuracyTarget, cost: PrivacyAmount) -> None:
    """Refuse (:class:`InvalidQuery`) a ``target`` whose ``cost`` is above the limit."""
    if cost.value > MAX_ACCURACY_FIRST_COST:
        raise InvalidQuery(
            f"max_error={target.max_error} at alpha={target.alpha} would cost "
            f"{cost.unit}≈{cost.value:.4g}, more than the limit of "
            f"{MAX_ACCURACY_FIRST_COST}; ask for a larger max_error"
        )


def accuracy_first(
    builder: MeasurementBuilder, target: AccuracyTarget
) -> tuple[PrivacyAmount, dp.Measurement]:
    """The smallest 4-significant-digit cost whose OpenDP accuracy meets ``target``, and the
    measurement at that cost.

    The measurement is ``builder``'s (its privacy unit, sensitivity and
    mechanism) at the global scale whose OpenDP privacy map is at most the
    float below the cost; its single aggregate's error bound at
    ``target.alpha`` is ≤ ``target.max_error``. Raises :class:`InvalidQuery`
    when no such cost is found or it is above :data:`MAX_ACCURACY_FIRST_COST`.
    """
    needed_scale = builder.scale_for_accuracy(target.max_error, target.alpha)
    needed_loss = builder.loss(builder.build(needed_scale))
    cost = PrivacyAmount(builder.model, Decimal(needed_loss)).rounded_up()
    check_cost_limit(target, cost)
    for _ in range(_STEPS_UP):
        measurement = builder.build(builder.solve_scale(cost.float_at_most()))
        (component,) = builder.summarize(measurement, target.alpha)
        if component.error_bound is not None and component.error_bound <= target.max_error:
            return cost, measurement
        cost = cost.step_up()
    raise InvalidQuery(f"could not find a cost meeting max_error={target.max_error}")
