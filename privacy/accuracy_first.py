"""Accuracy-first: the smallest cost whose OpenDP accuracy meets a target ``max_error``.

The search runs on public metadata only: OpenDP's ``accuracy_to_*_scale`` gives
the noise scale for ``max_error`` at ``alpha``, OpenDP's privacy map at that
scale the loss, and the cost is that loss rounded up to
:data:`~privacy.amount.COST_SIGNIFICANT_DIGITS` significant digits
(:meth:`~privacy.amount.PrivacyAmount.rounded_up`), raised a step at a time
(:meth:`~privacy.amount.PrivacyAmount.step_up`) until the measurement compiled
at that cost meets the target by OpenDP's ``summarize``. The search itself
releases nothing: only the cost it finds is debited and spent.

``mean`` (with ``min_cell_rows`` = n, required): the target is the per-cell
bound of :func:`privacy.mean_accuracy.bound_at_rows`,
``(a_s + M·a_n)/(n − a_n) ≤ max_error`` with ``a_s``, ``a_n`` OpenDP's
accuracies of the sum and count noise at ``α/2`` each: it holds w.p. ≥ 1 − α
for every cell with at least n rows. It grows with the global scale, so the
largest scale meeting it is found by bisection on OpenDP's ``summarize``; the
cost is then found and checked as above. All of it is public: n is the
client's number, never the data's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from decimal import Decimal

import opendp.prelude as dp

from privacy.amount import PrivacyAmount
from privacy.errors import InvalidQuery
from privacy.mean_accuracy import bound_at_rows, mean_noise
from privacy.measurement import MeasurementBuilder, NoiseComponent
from privacy.query import AccuracyTarget, ResolvedQuery
from privacy.rollup import level_accuracy

MAX_ACCURACY_FIRST_COST = Decimal(10_000)
"""Accuracy targets that would cost more than this (ε or ρ) are refused."""
_STEPS_UP = 16
_BISECTION_STEPS = 60


def mean_error_at_rows(
    query: ResolvedQuery, components: Sequence[NoiseComponent], target: AccuracyTarget
) -> float | None:
    """A mean's per-cell bound at ``target.min_cell_rows`` rows (None without it).

    :func:`~privacy.mean_accuracy.bound_at_rows` of the sum and count noise in
    ``components`` (OpenDP's scales) at ``target.alpha``.
    """
    if target.min_cell_rows is None:
        return None
    assert query.bounds is not None
    noise = mean_noise(components, target.alpha, (float(query.bounds[0]), float(query.bounds[1])))
    return bound_at_rows(noise, target.min_cell_rows)


def _mean_error(builder: MeasurementBuilder, target: AccuracyTarget) -> Callable[[float], float]:
    """The mean's bound at ``min_cell_rows`` as a function of the global scale."""

    def error(scale: float) -> float:
        measurement = builder.build(scale)
        bound = mean_error_at_rows(
            builder.query, builder.summarize(measurement, target.alpha), target
        )
        assert bound is not None
        return bound

    return error


def _mean_scale(builder: MeasurementBuilder, target: AccuracyTarget) -> float:
    """The largest global scale (to 2⁻⁶⁰ relative) whose mean bound is ≤ ``max_error``."""
    query = builder.query
    assert query.bounds is not None
    if target.max_error >= float(query.bounds[1]) - float(query.bounds[0]):
        raise InvalidQuery(
            f"max_error={target.max_error} is at least the width of the clamping bounds "
            f"{list(query.bounds)}: every value within them meets it; ask for a smaller max_error"
        )
    return _largest_scale(_mean_error(builder, target), target)


def _largest_scale(error: Callable[[float], float], target: AccuracyTarget) -> float:
    """The largest global scale (to 2⁻⁶⁰ relative) with ``error(scale) ≤ max_error``, for
    an ``error`` that grows with the scale (bisection)."""
    low, high = 1.0, 1.0
    while error(low) > target.max_error:
        low /= 2
        if low < 1e-300:
            raise InvalidQuery(f"max_error={target.max_error} cannot be reached")
    high = low * 2
    while error(high) <= target.max_error:
        low, high = high, high * 2
        if high > 1e300:
            raise InvalidQuery(f"max_error={target.max_error} cannot be reached")
    for _ in range(_BISECTION_STEPS):
        middle = (low + high) / 2
        if error(middle) <= target.max_error:
            low = middle
        else:
            high = middle
    return low


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
    ``target.alpha`` (a mean: its bound at ``min_cell_rows``) is ≤
    ``target.max_error``. Raises :class:`InvalidQuery` when no such cost is found
    or it is above :data:`MAX_ACCURACY_FIRST_COST`.
    """
    if builder.query.statistic == "mean":
        error = _mean_error(builder, target)
        needed_scale = _mean_scale(builder, target)
    else:
        needed_scale = builder.scale_for_accuracy(target.max_error, target.alpha)
        error = _single_error(builder, target)
    needed_loss = builder.loss(builder.build(needed_scale))
    cost = PrivacyAmount(builder.model, Decimal(needed_loss)).rounded_up()
    check_cost_limit(target, cost)
    for _ in range(_STEPS_UP):
        scale = builder.solve_scale(cost.float_at_most())
        if error(scale) <= target.max_error:
            return cost, builder.build(scale)
        cost = cost.step_up()
    raise InvalidQuery(f"could not find a cost meeting max_error={target.max_error}")


def _single_error(builder: MeasurementBuilder, target: AccuracyTarget) -> Callable[[float], float]:
    """The error bound of a single-aggregate statistic at ``target.alpha`` (inf if unknown)."""

    def error(scale: float) -> float:
        (component,) = builder.summarize(builder.build(scale), target.alpha)
        return component.error_bound if component.error_bound is not None else math.inf

    return error


def _rollup_error(
    builder: MeasurementBuilder, target: AccuracyTarget, families: tuple[int, ...]
) -> Callable[[float], float]:
    """A rollup's largest level bound after consistency as a function of the global
    scale (:func:`privacy.rollup.level_accuracy` of both levels' ``summarize``)."""

    def error(scale: float) -> float:
        child = builder.summarize(builder.build(scale), target.alpha)[0]
        parent = builder.summarize(builder.build_parent(scale), target.alpha)[0]
        bound = level_accuracy(
            builder.query, child, parent, builder.fixed_point, families, target.alpha
        ).error_bound
        assert bound is not None
        return bound

    return error


def rollup_accuracy_first(
    builder: MeasurementBuilder, target: AccuracyTarget, families: tuple[int, ...]
) -> tuple[PrivacyAmount, float]:
    """:func:`accuracy_first` of a rollup: the smallest 4-significant-digit cost whose
    largest level bound (after consistency) meets ``target``, and the global scale at
    which both levels' OpenDP maps sum to at most it.

    The largest scale meeting the target is found by bisection (the bounds grow with
    the scale), the cost is the two maps' sum there rounded up, then stepped up until
    the scale solved for it meets the target.
    """
    error = _rollup_error(builder, target, families)
    needed_scale = _largest_scale(error, target)
    cost = PrivacyAmount(builder.model, builder.total_loss(needed_scale)).rounded_up()
    check_cost_limit(target, cost)
    for _ in range(_STEPS_UP):
        scale = builder.solve_scale(cost.float_at_most())
        if error(scale) <= target.max_error:
            return cost, scale
        cost = cost.step_up()
    raise InvalidQuery(f"could not find a cost meeting max_error={target.max_error}")
