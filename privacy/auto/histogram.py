"""DP histograms over public integer keys (the selection releases), and cleaning their counts.

Each selection step releases ``dp.len()`` per public key combination through
OpenDP (:class:`Histogram`); :func:`trimmed` and :func:`released_counts` are
post-processing of what it released.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import opendp.prelude as dp
import polars as pl
from opendp.extras.polars import Bound, dp_len

from privacy.amount import PrivacyModel
from privacy.auto.noise import noise_sd
from privacy.errors import InvalidQuery
from privacy.measurement import (
    mechanism_name,
    output_measure,
    private_lazyframe,
    scale_to_accuracy,
    solve_global_scale,
)

COUNT_COLUMN = "ruis.count"
TRIM_ALPHA = 1e-3
"""Bins beyond the last one whose noisy count could be pure noise only with probability
below this (over all bins together) are taken as empty (see :func:`trimmed`)."""


@dataclass(frozen=True, eq=False)
class SolvedHistogram:
    """A histogram measurement at the scale whose OpenDP map meets its target."""

    measurement: dp.Measurement = field(repr=False)
    loss: float
    scale: float
    distribution: str

    @property
    def mechanism(self) -> str:
        """Our name for the noise distribution."""
        return mechanism_name(self.distribution)


class Histogram:
    """``dp.len()`` per public combination of the integer columns ``keys``, by OpenDP.

    The input frame holds only these columns (Int64). Privacy unit: each unit
    contributes at most ``rows`` rows (``d_in = [Bound(by=[], per_group=rows)]``
    over ``FrameDistance(SymmetricDistance)``); OpenDP derives the sensitivity
    (a unit's rows may all fall in one bin) and calibrates the noise. The
    released frame has exactly one row per public key combination.
    """

    def __init__(self, keys: dict[str, Sequence[int]], model: PrivacyModel) -> None:
        self.model = model
        names = list(keys)
        frame: pl.DataFrame | None = None
        for name, values in keys.items():
            column = pl.DataFrame({name: pl.Series(name, list(values), dtype=pl.Int64)})
            frame = column if frame is None else frame.join(column, how="cross")
        assert frame is not None
        self.keys = frame
        empty = pl.LazyFrame(schema=dict.fromkeys(names, pl.Int64()))
        self.plan = frame.lazy().join(
            empty.group_by(names).agg(cast(pl.Expr, dp_len(signed=True)).alias(COUNT_COLUMN)),
            on=names,
            how="left",
            nulls_equal=True,
        )
        self.metric, _ = dp.unit_of(contributions=[Bound(by=[], per_group=1)])
        self.domain = dp.lazyframe_domain(
            [dp.series_domain(name, dp.option_domain(dp.atom_domain(T="i64"))) for name in names]
        )
        self.measure = output_measure(model)

    @staticmethod
    def d_in(rows: int) -> list[Bound]:
        """Each unit has at most ``rows`` rows."""
        return [Bound(by=[], per_group=rows)]

    def build(self, scale: float) -> dp.Measurement:
        """The measurement at OpenDP global scale ``scale``."""
        return private_lazyframe(
            self.domain, self.metric, self.measure, self.plan, scale, what="the selection histogram"
        )

    def solve(self, target_loss: float, rows: int) -> SolvedHistogram:
        """The measurement whose OpenDP map at ``rows`` rows per unit is ≤ ``target_loss``."""
        d_in = self.d_in(rows)
        measurement = self.build(solve_global_scale(self.build, d_in, target_loss, self.model))
        loss = float(measurement.map(d_in))
        if not loss <= target_loss:
            raise InvalidQuery(f"OpenDP reports a selection loss {loss} above {target_loss}")
        summary = cast(pl.DataFrame, dp.summarize_polars_measurement(measurement, 0.05))
        return SolvedHistogram(
            measurement=measurement,
            loss=loss,
            scale=float(summary["scale"][0]),
            distribution=str(summary["distribution"][0]),
        )


class RowsCalibrated:
    """A :class:`Histogram` whose input rows are a function of bounds chosen at release:
    compiled once per bound on the rows per unit (the measurement whose OpenDP map at
    that many rows is ≤ ``target_loss``), and cached. Thread-safe."""

    def __init__(self, histogram: Histogram, target_loss: float) -> None:
        self.histogram = histogram
        self.target_loss = target_loss
        self._solved: dict[int, SolvedHistogram] = {}
        self._lock = threading.Lock()

    def for_rows(self, rows: int) -> SolvedHistogram:
        """The measurement for at most ``rows`` rows per unit."""
        with self._lock:
            solved = self._solved.get(rows)
        if solved is None:
            solved = self.histogram.solve(self.target_loss, rows=rows)
            with self._lock:
                self._solved[rows] = solved
        return solved

    def compiled(self) -> set[int]:
        """The rows per unit compiled for so far."""
        with self._lock:
            return set(self._solved)

    def widest(self) -> SolvedHistogram:
        """The measurement for the largest number of rows per unit compiled so far."""
        with self._lock:
            return self._solved[max(self._solved)]


def trimmed(counts: np.ndarray, solved: SolvedHistogram) -> np.ndarray:
    """Noisy counts cleaned for the rule (post-processing): negatives → 0, empty tails → 0.

    Along each axis, the bins beyond the last one whose marginal noisy count
    exceeds ``a·√width`` are set to 0, where ``a`` is OpenDP's error bound of one
    bin at significance :data:`TRIM_ALPHA` / (number of bins) and ``width`` the
    number of bins summed in the marginal. The rule weighs high bins most (a
    unit with 20 groups is 17 units of bias at k = 3), so noise in tails where
    no unit is would otherwise pull the choice towards large bounds; a real tail
    smaller than the noise cannot be told from noise anyway.
    """
    cleaned = np.array(counts, dtype=float)
    accuracy = scale_to_accuracy(solved.distribution, solved.scale, TRIM_ALPHA / cleaned.size)
    threshold = (
        accuracy if accuracy is not None else 10 * noise_sd(solved.distribution, solved.scale)
    )
    for axis in range(cleaned.ndim):
        other = tuple(a for a in range(cleaned.ndim) if a != axis)
        marginal = cleaned.sum(axis=other) if other else cleaned
        width = int(np.prod([cleaned.shape[a] for a in other])) if other else 1
        significant = np.nonzero(marginal > threshold * math.sqrt(width))[0]
        last = int(significant.max()) if significant.size else -1
        index = [slice(None)] * cleaned.ndim
        index[axis] = slice(last + 1, None)
        cleaned[tuple(index)] = 0.0
    result: np.ndarray = np.maximum(cleaned, 0.0)
    return result


VISIBLE_ALPHA = 1e-3
"""A bin stands out of the noise by itself when its count is above OpenDP's accuracy at
this significance over all bins together (see :func:`visible_box`)."""
TAIL_WINDOW = 4
"""How many consecutive bins a tail sums (see :func:`visible_box`)."""
TAIL_SDS = 4.0
"""A tail of bins counts as seen when its noisy sum is above this many standard deviations
of the sum's noise (see :func:`visible_box`)."""
PESSIMISM_SDS = 1.0
"""The rule adds this many standard deviations of noise to what a candidate would drop."""


def visible_box(
    counts: np.ndarray, solved: SolvedHistogram, *, whole_windows: bool = False
) -> np.ndarray:
    """The bins the rule reads (post-processing): along each axis, up to the last bin that
    stands out of the noise, by itself or as the start of a tail.

    A bin stands out by itself when its marginal is above OpenDP's accuracy at
    :data:`VISIBLE_ALPHA` over all bins; as the start of a tail when the marginal
    summed over it and the next bins (:data:`TAIL_WINDOW` in all) is above
    :data:`TAIL_SDS` standard deviations of that sum's noise. The second sees a tail of
    many thin bins: on small data each bin of a
    unit-profile histogram can sit below its own noise while the units beyond k are
    many — reading them as 0 made the rule pick the smallest bounds as if nothing
    were dropped.
    """
    sd = noise_sd(solved.distribution, solved.scale)
    per_bin = scale_to_accuracy(solved.distribution, solved.scale, VISIBLE_ALPHA / counts.size)
    box = np.ones(counts.shape, dtype=bool)
    for axis in range(counts.ndim):
        other = tuple(a for a in range(counts.ndim) if a != axis)
        marginal = counts.sum(axis=other) if other else counts
        width = int(np.prod([counts.shape[a] for a in other])) if other else 1
        # the sums of TAIL_WINDOW bins from each bin on (fewer at the end)
        padded = np.concatenate([np.cumsum(marginal[::-1])[::-1], np.zeros(TAIL_WINDOW)])
        tails = padded[: marginal.size] - padded[TAIL_WINDOW : TAIL_WINDOW + marginal.size]
        bins = np.minimum(TAIL_WINDOW, np.arange(marginal.size, 0, -1)) * width
        alone = marginal > (per_bin if per_bin is not None else 10 * sd) * math.sqrt(width)
        windows = np.nonzero(tails > TAIL_SDS * sd * np.sqrt(bins))[0]
        # with whole_windows a window that stands out is read whole (its later bins are
        # part of the evidence); the rule reads up to its start (noise bins past the data
        # would make every candidate below them look lossy)
        reach = TAIL_WINDOW - 1 if whole_windows else 0
        ends = [*np.nonzero(alone)[0], *(windows + reach)]
        last = min(int(max(ends)), marginal.size - 1) if ends else 0
        index = [slice(None)] * counts.ndim
        index[axis] = slice(last + 1, None)
        box[tuple(index)] = False
    return box


def dropped_upper(
    counts: np.ndarray, weights: np.ndarray, solved: SolvedHistogram, box: np.ndarray
) -> float:
    """A pessimistic estimate of ``Σ_b weights_b · h_b`` from the noisy counts (post-processing).

    The linear estimate on the raw noisy counts inside ``box`` (unbiased there, taken
    as at least 0) plus :data:`PESSIMISM_SDS` standard deviations of its noise: where
    the histogram cannot tell, the rule assumes data is dropped rather than not.
    """
    inside = np.where(box, weights, 0.0)
    point = max(0.0, float((inside * counts).sum()))
    sd = noise_sd(solved.distribution, solved.scale) * float(np.sqrt((inside**2).sum()))
    return point + PESSIMISM_SDS * sd


def released_counts(released: pl.DataFrame, keys: pl.DataFrame) -> np.ndarray:
    """The noisy counts in the order of ``keys`` (post-processing; negatives kept)."""
    names = keys.columns
    joined = keys.join(
        released.select([*names, COUNT_COLUMN]),
        on=names,
        how="left",
        nulls_equal=True,
        maintain_order="left",
    )
    return joined[COUNT_COLUMN].fill_null(0).cast(pl.Float64).to_numpy()
