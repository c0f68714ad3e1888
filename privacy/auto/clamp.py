"""Step 2 of automatic bounds: choosing the clamping bounds from a DP histogram of binned values.

See :mod:`privacy.auto` for the rule and the privacy argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import polars as pl

from privacy.amount import PrivacyAmount, PrivacyModel
from privacy.auto.histogram import (
    Histogram,
    RowsCalibrated,
    SolvedHistogram,
    dropped_upper,
    released_counts,
    trimmed,
    visible_box,
)
from privacy.auto.noise import UnitScaleMeasurement, noise_sd
from privacy.candidates import ClampCandidates
from privacy.measurement import (
    MeasurementBuilder,
    quantile_candidates,
)
from privacy.metadata import DatasetMetadata
from privacy.query import ResolvedQuery

BIN_COLUMN = "ruis.bin"
"""Clamp histogram column: the bin of a row's distance from the candidates' fixed end."""
QUANTILE_MARGIN_SDS = 2.0
MEAN_CLAMP_LEVEL = 0.95
"""A mean's clamp holds at least this share of the rows (as estimated; see ``choose``)."""
"""The quantile clamp rule raises its target level by this many noise standard deviations."""


@dataclass(frozen=True)
class ClampChoice:
    """The clamping candidate chosen, with the estimated error terms of every candidate."""

    index: int
    bounds: tuple[float, float] | tuple[int, int]
    scores: list[dict[str, Any]]
    histogram: list[float]


@dataclass(frozen=True, eq=False)
class ClampSelection:
    """How the clamping bounds are chosen: the binning, its DP histogram and the rule's inputs."""

    cost: Decimal
    candidates: ClampCandidates
    histogram: Histogram = field(repr=False)
    statistic: str
    q: float | None
    model: PrivacyModel
    statistic_target: float
    cells: int
    sum_noise: tuple[UnitScaleMeasurement, ...] | None
    """Per candidate, the sum's measurement at global scale 1 (sum and mean)."""
    spacing: tuple[float, ...]
    """Per candidate, the spacing of the quantile candidates inside it."""
    calibrated: RowsCalibrated = field(repr=False)
    """The histogram at ``cost``, compiled per bound on the truncated rows per unit."""
    bounds_per_cells: int = 1
    """D of ``contribution_bounds_per``: after truncation at (k, c) a unit has ≤ k·c·D rows."""

    def for_rows(self, rows: int) -> SolvedHistogram:
        """The histogram measurement for at most ``rows`` rows per unit (cached)."""
        return self.calibrated.for_rows(rows)

    def solved_at_most_rows(self) -> SolvedHistogram:
        """The measurement for the largest number of rows per unit compiled so far."""
        return self.calibrated.widest()

    def bin_expression(self, column: str) -> pl.Expr:
        """Row-wise: the bin of the row's distance ``y`` from the candidates' fixed end.

        Bin 0 holds ``y ≤ w_0``, bin ``b`` holds ``w_{b−1} < y ≤ w_b``; ``y`` is
        clipped to ``[0, W]`` first.
        """
        low, high = self.candidates.public
        value = pl.col(column).cast(pl.Float64)
        if self.candidates.mode == "upper":
            distance = value - low
        elif self.candidates.mode == "lower":
            distance = high - value
        else:
            distance = value.abs()
        distance = distance.clip(0.0, self.candidates.full_width)
        edges = pl.Series("edges", list(self.candidates.widths), dtype=pl.Float64)
        return pl.lit(edges).search_sorted(distance, side="left").cast(pl.Int64).alias(BIN_COLUMN)

    def choose(self, released: pl.DataFrame, k: int, c: int) -> ClampChoice:
        """The candidate of least estimated error at the chosen (k, c)."""
        noisy = released_counts(released, self.histogram.keys)
        solved = self.for_rows(k * c * self.bounds_per_cells)
        counts = trimmed(noisy, solved)
        widths = np.array(self.candidates.widths)
        lower_edges = np.concatenate([[0.0], widths[:-1]])
        middles = (lower_edges + widths) / 2
        scores: list[dict[str, Any]] = []
        errors: list[float] = []
        if self.statistic == "quantile":
            assert self.q is not None
            estimate = float(widths[self._reach(counts, self.q, k, c)])
            for index, width in enumerate(widths):
                outside = max(0.0, estimate - float(width))
                error = outside + self.spacing[index] / 2
                errors.append(error)
                scores.append(
                    {
                        "bounds": list(self.candidates.bounds(index)),
                        "outside": outside,
                        "spacing": self.spacing[index],
                        "error": error,
                    }
                )
        else:
            assert self.sum_noise is not None
            box = visible_box(noisy, solved)
            for index, width in enumerate(widths):
                excess = np.maximum(middles - width, 0.0)
                excess[: index + 1] = 0.0
                bias = dropped_upper(noisy, excess, solved, box) / self.cells
                noise = self.sum_noise[index].expected_abs(k, c, self.statistic_target, self.model)
                errors.append(bias + noise)
                scores.append(
                    {
                        "bounds": list(self.candidates.bounds(index)),
                        "bias": bias,
                        "noise": noise,
                        "error": bias + noise,
                    }
                )
        if self.statistic == "mean":
            # a mean is read against its value, not the sum's noise: the clamp must hold
            # most rows, else it is biased towards the clamp whatever the noise (at large
            # k·c the sum's noise made the narrowest candidate look best, a mean of 0.005
            # minutes); candidates below the estimated MEAN_CLAMP_LEVEL quantile are out
            # When the histogram's noise swamps what it shows (the level, raised by its
            # noise margin, reaches 1), where most rows lie is unknown: the widest, too.
            seen = visible_box(noisy, solved, whole_windows=True)
            visible = np.where(seen, np.maximum(noisy, 0.0), 0.0)
            floor = (
                self._reach(visible, MEAN_CLAMP_LEVEL, k, c)
                if seen[1:].any() and self._quantile_level(visible, MEAN_CLAMP_LEVEL, k, c) < 1
                else len(widths) - 1  # nothing seen beyond the first bin, or only noise
            )
            errors = [e if i >= floor else math.inf for i, e in enumerate(errors)]
        index = int(np.argmin(errors))
        return ClampChoice(
            index=index,
            bounds=self.candidates.bounds(index),
            scores=scores,
            histogram=[float(v) for v in noisy],
        )

    def _reach(self, counts: np.ndarray, q: float, k: int, c: int) -> int:
        """The first candidate whose width the q-quantile of the values does not exceed,
        estimated from the cleaned counts raised by the noise margin (last if none)."""
        level = self._quantile_level(counts, q, k, c)
        total = counts.sum()
        last = len(self.candidates.widths) - 1
        if total < 1:
            return last
        reach = int(np.searchsorted(np.cumsum(counts), level * total, side="left"))
        return min(reach, last)

    def _quantile_level(self, counts: np.ndarray, q: float, k: int, c: int) -> float:
        """The level of ``y`` the clamp must cover for the quantile ``q`` of the values
        (for a mean: ``q`` of the distances themselves), plus the noise margin."""
        mode = self.candidates.mode
        if self.statistic == "mean":
            level = q
        else:
            level = q if mode == "upper" else 1 - q if mode == "lower" else max(q, 1 - q)
        solved = self.for_rows(k * c * self.bounds_per_cells)
        total = float(counts.sum())
        if total < 1:
            return 1.0
        sd = noise_sd(solved.distribution, solved.scale) * math.sqrt(len(counts))
        return min(1.0, level + QUANTILE_MARGIN_SDS * sd / total)


def plan_clamp_selection(
    query: ResolvedQuery,
    metadata: DatasetMetadata,
    cost: PrivacyAmount,
    statistic_cost: PrivacyAmount,
) -> ClampSelection:
    """Compile what choosing the clamp needs, from public metadata only."""
    model = cost.model
    auto = query.auto
    assert auto is not None and auto.clamp is not None and query.column_type is not None
    candidates = auto.clamp
    histogram = Histogram({BIN_COLUMN: range(len(candidates.widths))}, model)
    sum_noise: tuple[UnitScaleMeasurement, ...] | None = None
    if query.statistic in ("sum", "mean"):
        sum_noise = tuple(
            UnitScaleMeasurement.of(
                MeasurementBuilder(
                    query.with_bounds(
                        query.max_partitions_contributed,
                        query.max_contributions_per_partition,
                        bounds,
                        query.privacy,
                    ),
                    metadata,
                    model,
                ),
                "sum",
            )
            for bounds in candidates.all_bounds()
        )
    spacing = []
    for bounds in candidates.all_bounds():
        points = quantile_candidates(bounds, query.column_type)
        spacing.append((float(bounds[1]) - float(bounds[0])) / max(1, len(points) - 1))
    selection = ClampSelection(
        cost=cost.value,
        candidates=candidates,
        histogram=histogram,
        statistic=query.statistic,
        q=query.q,
        model=model,
        statistic_target=statistic_cost.float_at_most(),
        cells=query.cells,
        sum_noise=sum_noise,
        spacing=tuple(spacing),
        bounds_per_cells=query.bounds_per_cells,
        calibrated=RowsCalibrated(histogram, cost.float_at_most()),
    )
    # the largest (k, c), compiled now: its loss is what a preview reports
    selection.for_rows(
        query.unit_rows(query.max_partitions_contributed, query.max_contributions_per_partition)
    )
    return selection
