"""Per-cell intervals for a DP mean, from its noisy sum and noisy count (post-processing only).

A ``mean`` is released as two OpenDP aggregates per cell, the noisy clamped
sum ``Ŝ = S + e_s`` and the noisy row count ``N̂ = N + e_n``, exactly the two
OpenDP's ``dp.mean`` builds (``dp.sum`` / ``dp.len`` at the same global scale,
so the same privacy loss and the same noise scales; see
:mod:`privacy.measurement`). Everything here is a function of those DP outputs
and of public values (the clamping bounds ``[L, U]``, OpenDP's reported noise
scales), so by post-processing it spends nothing and keeps the guarantee.

**The algebra.** Let ``μ = S / N`` be the exact mean of the truncated, clamped
cell (``N > 0``), so ``L ≤ μ ≤ U`` and ``|μ| ≤ M = max(|L|, |U|)``. Then
``Ŝ − μ·N̂ = S + e_s − μ·N − μ·e_n = e_s − μ·e_n`` and, when ``N̂ > 0``::

    Ŝ/N̂ − μ = (e_s − μ·e_n) / N̂,   so   |Ŝ/N̂ − μ| ≤ (a_s + M·a_n) / N̂

whenever ``|e_s| ≤ a_s`` and ``|e_n| ≤ a_n``. With ``a_s``, ``a_n`` OpenDP's
accuracies at ``α/2`` (``P(|e| ≥ a) ≤ α/2`` each, OpenDP's
``*_scale_to_accuracy`` at the scales ``summarize`` reports) the union bound
gives probability ≥ 1 − α per cell. When ``N̂ ≤ 0`` nothing is claimed beyond
``μ ∈ [L, U]``. The released interval is ``[Ŝ/N̂ − h, Ŝ/N̂ + h] ∩ [L, U]`` and
the released value ``Ŝ/N̂`` clamped to ``[L, U]`` (the midpoint when ``N̂ ≤ 0``).
On the same event ``μ`` lies in that interval, so ``|μ| ≤ M' = max(|lower|, |upper|)``
and ``h' = (a_s + M'·a_n)/N̂`` holds too: :func:`mean_cell` narrows the interval
so a few times (a tighter statement of the same event, not a new one), which
matters when ``|μ|`` is well below ``M``.

**Data-independent form** (for previews and accuracy-first): for a cell with
``N ≥ n`` rows, on the same event ``N̂ ≥ N − a_n ≥ n − a_n``, so the half-width
is at most ``(a_s + M·a_n) / (n − a_n)`` when ``n > a_n``
(:func:`bound_at_rows`). ``N`` is private; ``n`` is a number the client states.

Covers noise only (``covers = "noise"``): truncation and clamping change ``μ``
itself, which this does not see. Clamping the ratio to ``[L, U]`` never
increases its distance to ``μ ∈ [L, U]`` (a projection), so ``|value − μ| ≤ h``
too. Float rounding of the sum is inside OpenDP's
sensitivity, not inside ``a_s`` (it is far below it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from privacy.measurement import (
    MEAN_COUNT_COLUMN,
    MEAN_SUM_COLUMN,
    NoiseComponent,
    scale_to_accuracy,
)

__all__ = [
    "MEAN_COUNT_COLUMN",
    "MEAN_SUM_COLUMN",
    "MeanNoise",
    "bound_at_rows",
    "cell_half_width",
    "half_width",
    "mean_cell",
    "mean_noise",
    "opendp_accuracy",
]


def opendp_accuracy(component: NoiseComponent, alpha: float) -> float:
    """OpenDP's accuracy ``a`` of ``component`` at ``alpha``: ``P(|noise| ≥ a) ≤ alpha``.

    The same function OpenDP's ``summarize_polars_measurement`` applies, at the
    scale it reported; ``0`` for a noiseless component (scale 0).
    """
    if component.scale == 0:
        return 0.0
    accuracy = scale_to_accuracy(component.distribution, component.scale, alpha)
    if accuracy is None:
        raise ValueError(f"OpenDP has no accuracy for {component.distribution}")
    return max(accuracy, 0.0)


@dataclass(frozen=True)
class MeanNoise:
    """The noise allowances of one mean release: each holds w.p. ≥ 1 − α/2 per cell.

    ``sum_bound`` = ``a_s`` and ``count_bound`` = ``a_n`` are OpenDP's
    accuracies at ``alpha / 2``; ``lower``/``upper`` the clamping bounds.
    """

    alpha: float
    sum_bound: float
    count_bound: float
    lower: float
    upper: float

    @property
    def magnitude(self) -> float:
        """``M = max(|L|, |U|)``, a bound on ``|μ|``."""
        return max(abs(self.lower), abs(self.upper))

    @property
    def width(self) -> float:
        """``U − L``."""
        return self.upper - self.lower


def mean_noise(
    components: Sequence[NoiseComponent], alpha: float, bounds: tuple[float, float]
) -> MeanNoise:
    """The :class:`MeanNoise` of a mean plan's ``components`` (one ``sum``, one ``count``)."""
    by_aggregate = {c.aggregate: c for c in components}
    return MeanNoise(
        alpha=alpha,
        sum_bound=opendp_accuracy(by_aggregate["sum"], alpha / 2),
        count_bound=opendp_accuracy(by_aggregate["count"], alpha / 2),
        lower=float(bounds[0]),
        upper=float(bounds[1]),
    )


_REFINEMENTS = 4
"""Steps of the refinement of ``M`` in :func:`mean_cell`."""


def half_width(noise: MeanNoise, noisy_count: float) -> float:
    """``(a_s + M·a_n) / N̂`` for ``N̂ > 0``, else ``inf`` (no claim beyond the bounds)."""
    if not noisy_count > 0:
        return math.inf
    return (noise.sum_bound + noise.magnitude * noise.count_bound) / noisy_count


def bound_at_rows(noise: MeanNoise, rows: int) -> float:
    """The half-width for every cell with at least ``rows`` (exact) rows, w.p. ≥ 1 − α.

    ``min((a_s + M·a_n) / (rows − a_n), U − L)`` when ``rows > a_n``, else ``U − L``:
    on the event of the module docstring ``N̂ ≥ rows − a_n``, and the released
    value and the exact mean both lie in ``[L, U]``. Data-independent: ``rows``
    is stated by the client, not read from the data.
    """
    if not rows > noise.count_bound:
        return noise.width
    spread = (noise.sum_bound + noise.magnitude * noise.count_bound) / (rows - noise.count_bound)
    return min(spread, noise.width)


def mean_cell(noise: MeanNoise, noisy_sum: float, noisy_count: float) -> tuple[float, float, float]:
    """``(value, lower, upper)`` of one cell from its noisy sum and count (post-processing).

    ``value`` is ``Ŝ/N̂`` clamped to ``[L, U]`` (their midpoint when ``N̂ ≤ 0``
    or the ratio is NaN); ``[lower, upper]`` is ``[Ŝ/N̂ ∓ h] ∩ [L, U]``, narrowed
    by the refinement of ``M`` (module docstring), which holds the exact mean
    w.p. ≥ 1 − α. Each interval intersected contains ``value`` (the ratio
    projected onto ``[L, U]``), so ``lower ≤ value ≤ upper`` always.
    """
    low, high = noise.lower, noise.upper
    h = half_width(noise, noisy_count)
    ratio = noisy_sum / noisy_count if noisy_count > 0 else math.nan
    if not math.isfinite(h) or math.isnan(ratio):
        return (low + high) / 2, low, high
    value = min(max(ratio, low), high)
    if ratio + h < low or ratio - h > high:
        # [Ŝ/N̂ ∓ h] misses [L, U], where the exact mean always lies: the noise was beyond
        # its bounds (the α event). Say so with the whole range, not a zero-width interval.
        return value, low, high
    lower = min(max(ratio - h, low), high)
    upper = max(min(ratio + h, high), low)
    for _ in range(_REFINEMENTS):
        # On the event |e_s| ≤ a_s, |e_n| ≤ a_n: μ ∈ [lower, upper], so |μ| ≤ max(|lower|,
        # |upper|) =: M' ≤ M and |Ŝ/N̂ − μ| ≤ (a_s + M'·a_n)/N̂ as well: the narrower
        # interval holds μ on the same event (by induction over the steps).
        magnitude = max(abs(lower), abs(upper))
        h = (noise.sum_bound + magnitude * noise.count_bound) / noisy_count
        if ratio + h < low or ratio - h > high:
            return value, low, high  # the same contradiction: the noise event failed
        lower = max(lower, min(max(ratio - h, low), high))
        upper = min(upper, max(min(ratio + h, high), low))
    return value, lower, upper


def cell_half_width(value: float, lower: float, upper: float) -> float:
    """The symmetric half-width around a released value that still covers ``[lower, upper]``."""
    return max(value - lower, upper - value)
