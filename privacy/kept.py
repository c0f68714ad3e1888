"""What contribution bounding dropped: a DP estimate of the kept share, and a bias bound.

Truncating each unit to ``k`` groups × ``c`` rows (:mod:`privacy.truncation`)
and clamping values bias a release, and nothing in OpenDP's noise accounts for
it. Every release whose bounds can drop data therefore spends a part of its own
cost (:data:`TRUNCATION_SHARE`) on a DP estimate of what they dropped:

* the **dropped histogram**: one row per unit with ``d_u``, the contributions of
  ``u`` that the bounds dropped (rows for ``count``/``sum``/``mean``/``quantile``;
  (unit, group) pairs for ``unit_count``), binned at public edges
  (:data:`DROPPED_EDGES`: 0, 1, 2, 3, then two bins per power of two), released
  by OpenDP's ``dp.len()`` per bin over the public bins (one row per unit);
* for ``sum``/``mean``/``quantile``, the **kept rows histogram**: the truncated
  rows (at most ``k·c`` per unit) counted by OpenDP per public key
  ``inside``/``outside`` the clamping bounds — the rows kept and the share of
  them that clamping moves (``clamped_share``);
* for ``count``/``unit_count`` the kept total needs no extra release: it is the
  sum of the released cells (post-processing).

**Privacy argument.** Let ``F`` be the row-wise filters and ``T`` the per-unit
truncation. ``d_u`` is a function of unit ``u``'s own rows of ``F(D)`` (its
rows and groups before and after ``T_u``, which reads only ``u``'s rows), so the
profile ``P(D) = {(bin(d_u))}_u`` is a per-unit map with one row per unit:
adding or removing one unit adds or removes one row. OpenDP's histogram at
``d_in = [Bound(by=[], per_group=1)]`` is then ε_d-DP (ρ_d-zCDP) in the unit.
The kept rows histogram reads ``T(F(D))``, at most ``k·c`` rows per unit (``k·c·D``
with ``contribution_bounds_per``), through a row-wise binning; OpenDP's map at that
``per_group`` is ≤ its cost.
Both costs come out of the query's cost (see :func:`split_truncation_cost`) and,
with the statistic's measurement, compose sequentially; the estimates below are
post-processing of their outputs and of public facts (bins, OpenDP's noise).

**What the estimates cover.** Bins beyond the last one that stands out of the
noise, by itself or as the start of a tail
(:func:`~privacy.auto.histogram.visible_box`), are taken as empty: a tail of fewer
units than the noise can show is invisible to any DP estimate (a single unit with
unboundedly many dropped rows changes one bin by one). Within the visible bins,
every error bound below holds with the stated probability by rigorous tail bounds
(union bounds over bins with OpenDP's per-bin accuracy, or Chebyshev–Cantelli on
the sum of the cells' noise), never a normal approximation.

**Bias bound per cell.** A cell's truncated value is below its value on the
whole data by ``D_c`` = the contributions dropped from that cell, and
``D_c ≤ Σ_u m_u`` where ``m_u`` is the most unit ``u`` loses in any one cell;
``m_u ≤ d_u``, and for ``unit_count`` ``m_u = [d_u > 0]`` (a unit is counted at
most once per cell). So ``B = Σ_{u: d_u > 0} 1`` (``unit_count``) or ``B = Σ_u d_u``
(``count``) bounds every cell's bias, and its DP upper bound ``B_hi`` turns the
noise bound into one that covers the truth: ``truth ∈ [value − a, value + a + B_hi]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import numpy as np
import polars as pl

from privacy.amount import PrivacyAmount, PrivacyModel
from privacy.auto.histogram import (
    VISIBLE_ALPHA,
    Histogram,
    RowsCalibrated,
    SolvedHistogram,
    released_counts,
    visible_box,
)
from privacy.auto.noise import noise_sd
from privacy.measurement import VALUE_COLUMN, scale_to_accuracy
from privacy.query import ResolvedQuery
from privacy.truncation import unit_group_counts

TRUNCATION_SHARE = Decimal("0.05")
"""The share of a query's cost spent on estimating what its bounds dropped."""
BIAS_ALPHA_SHARE = 0.2
"""The share of a release's α given to the bias bound (the noise bound gets the rest)."""
DROPPED_COLUMN = "ruis.dropped_bin"
OUTSIDE_COLUMN = "ruis.outside"
LOSING_COLUMN = "ruis.losing"


def _dropped_edges() -> tuple[int, ...]:
    edges = [0, 1, 2, 3]
    power = 4
    while power < 2**33:
        edges += [power, power + power // 2]
        power *= 2
    return tuple(edges)


DROPPED_EDGES = _dropped_edges()
"""Lower edges of the dropped-contributions bins: bin ``b`` holds ``[e_b, e_{b+1} − 1]``."""


@dataclass(frozen=True)
class DroppedBins:
    """The bins of a query's dropped histogram: :data:`DROPPED_EDGES` up to the public
    most a unit can lose (the cells for ``unit_count``, the dataset's ``max_rows`` for
    rows); the last bin ends there."""

    edges: tuple[int, ...]
    most: int

    @classmethod
    def up_to(cls, most: int) -> DroppedBins:
        """The bins covering ``0..most``."""
        most = max(1, most)
        return cls(edges=tuple(e for e in DROPPED_EDGES if e <= most), most=most)

    @property
    def low(self) -> np.ndarray:
        """Each bin's smallest value."""
        return np.array(self.edges, dtype=float)

    @property
    def high(self) -> np.ndarray:
        """Each bin's largest value."""
        return np.array([*(e - 1 for e in self.edges[1:]), self.most], dtype=float)

    @property
    def middle(self) -> np.ndarray:
        """Each bin's middle (its point estimate)."""
        middle: np.ndarray = (self.low + self.high) / 2
        return middle


def can_drop(query: ResolvedQuery, smallest_k: int) -> bool:
    """Whether bounding can change a release of ``query`` (public facts only).

    ``unit_count`` counts a unit once per group, so it loses nothing when ``k``
    (the smallest candidate, with automatic bounds) reaches the number of cells;
    every other statistic can lose rows beyond ``c`` per group, and
    sum/mean/quantile can clamp. With ``unit_location`` every unit is counted once,
    in the group of its most frequent value: nothing is bounded, nothing dropped.
    """
    if query.location is not None:
        return False
    return query.statistic != "unit_count" or smallest_k < query.cells


def split_truncation_cost(cost: PrivacyAmount) -> tuple[PrivacyAmount, PrivacyAmount]:
    """``(truncation cost, the rest)``: ``floor(TRUNCATION_SHARE · cost)`` to 12 decimals
    and the exact rest, which sum to ``cost`` exactly (ValueError when too small)."""
    pieces, rest = cost.split(TRUNCATION_SHARE, 1)
    return pieces[0], rest


@dataclass(frozen=True)
class TruncationEstimate:
    """What a release's bounds dropped, estimated with DP (see the module docstring).

    ``kept_share`` ∈ [0, 1] is the share of the contributions (after the
    filters) that the contribution bounds kept; with probability ≥ 1 − alpha it
    is within ``kept_share_error_bound`` of the true share (on the visible
    bins). ``clamped_share`` (sum/mean/quantile) is the share of kept rows whose
    value lies outside the clamping bounds. ``bias_bound`` (count, unit_count)
    bounds every cell's truncation bias with probability ≥ 1 − its alpha.
    """

    kept_share: float
    kept_share_error_bound: float
    cost: Decimal
    model: PrivacyModel
    opendp_loss: float
    clamped_share: float | None = None
    clamped_share_error_bound: float | None = None
    bias_bound: float | None = None
    record: dict[str, Any] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        """The response's ``truncation`` object (the cost in the budget's unit)."""
        body: dict[str, Any] = {
            "kept_share": self.kept_share,
            "kept_share_error_bound": self.kept_share_error_bound,
            "cost": PrivacyAmount.of(self.model, self.cost).unit_document(),
        }
        if self.clamped_share is not None:
            body["clamped_share"] = self.clamped_share
            body["clamped_share_error_bound"] = self.clamped_share_error_bound
        return body


@dataclass(frozen=True, eq=False)
class TruncationPlan:
    """The DP measurements estimating what the bounds drop, compiled from public metadata."""

    cost: Decimal
    model: PrivacyModel
    dropped: SolvedHistogram
    dropped_histogram: Histogram = field(repr=False)
    bins: DroppedBins
    kept: RowsCalibrated | None = field(default=None, repr=False)
    """Sum/mean/quantile: the kept rows histogram (inside/outside the clamp), compiled per
    bound on a unit's truncated rows."""
    losing: SolvedHistogram | None = None
    """unit_count: the histogram of units that lost anything (keys 0, 1), at 20% of the cost."""
    losing_histogram: Histogram | None = field(default=None, repr=False)

    @property
    def opendp_loss_at_most(self) -> Decimal:
        """An upper bound on the OpenDP loss of the measurements (what the plan adds),
        exactly: OpenDP's maps of the dropped and losing histograms plus the kept rows
        histogram's target (its map at any rows per unit is at most that)."""
        kept = Decimal(self.kept.target_loss) if self.kept is not None else Decimal(0)
        losing = Decimal(self.losing.loss) if self.losing is not None else Decimal(0)
        return Decimal(self.dropped.loss) + kept + losing


def plan_truncation(
    query: ResolvedQuery, cost: PrivacyAmount, max_rows: int | None
) -> TruncationPlan:
    """Compile the truncation measurements at ``cost`` (public metadata only).

    Count: the dropped histogram gets all of ``cost``. Unit count: 80% for it, the
    rest for the count of units that lost anything. Sum, mean, quantile: half each
    for the dropped and the kept rows histograms. The parts sum to ``cost`` exactly.
    Privacy unit and sensitivities: see the module docstring; OpenDP calibrates and
    reports each loss.
    """
    model = cost.model
    most = query.cells if query.statistic == "unit_count" else (max_rows or 2**33)
    bins = DroppedBins.up_to(most)
    dropped_histogram = Histogram({DROPPED_COLUMN: range(len(bins.edges))}, model)
    share = {"count": Decimal(1), "unit_count": Decimal("0.8")}.get(query.statistic, Decimal("0.5"))
    dropped_cost, rest = cost.split(share, 1) if share < 1 else ([cost], None)
    kept: RowsCalibrated | None = None
    losing: SolvedHistogram | None = None
    losing_histogram: Histogram | None = None
    if rest is not None and query.statistic == "unit_count":
        losing_histogram = Histogram({LOSING_COLUMN: (0, 1)}, model)
        losing = losing_histogram.solve(rest.float_at_most(), rows=1)
    elif rest is not None:
        kept = RowsCalibrated(Histogram({OUTSIDE_COLUMN: (0, 1)}, model), rest.float_at_most())
        # the largest (k, c), compiled now: its loss is what a preview reports
        kept.for_rows(
            query.unit_rows(query.max_partitions_contributed, query.max_contributions_per_partition)
        )
    return TruncationPlan(
        cost=cost.value,
        model=model,
        dropped=dropped_histogram.solve(dropped_cost[0].float_at_most(), rows=1),
        dropped_histogram=dropped_histogram,
        bins=bins,
        kept=kept,
        losing=losing,
        losing_histogram=losing_histogram,
    )


def dropped_profile(
    frame: pl.LazyFrame,
    truncated: pl.DataFrame,
    *,
    unit: str,
    by: list[str],
    mask: str,
    statistic: str,
    bins: DroppedBins,
    counts: pl.LazyFrame | None = None,
) -> pl.LazyFrame:
    """One row per unit of ``frame``: the bin of its dropped contributions (Int64 column).

    ``frame`` holds every row with the Boolean ``mask`` of ``F`` (the filters);
    ``truncated`` is ``T(F(D))``. Per (unit, group): the matching rows (or 1 if
    any, for ``unit_count``) minus the kept ones; per unit their sum, binned at
    :data:`DROPPED_EDGES`. A per-unit map (see the module docstring); the work
    runs over every (unit, group) of the file whatever the mask keeps.
    """
    if counts is None:
        counts = unit_group_counts(frame, unit=unit, by=by, mask=mask)
    matched = counts.collect_schema().names()[-1]
    kept = truncated.lazy().group_by([unit, *by]).agg(pl.len().cast(pl.UInt32).alias("ruis.kept"))
    if statistic == "unit_count":
        before = (pl.col(matched) > 0).cast(pl.Int64)
        after = (pl.col("ruis.kept") > 0).cast(pl.Int64)
    else:
        before = pl.col(matched).cast(pl.Int64)
        after = pl.col("ruis.kept").cast(pl.Int64)
    edges = pl.Series("edges", list(bins.edges), dtype=pl.Int64)
    per_unit = (
        counts.join(kept, on=[unit, *by], how="left", nulls_equal=True)
        .with_columns(pl.col("ruis.kept").fill_null(0))
        .group_by(unit)
        .agg((before - after).sum().alias("ruis.dropped"))
    )
    return per_unit.select(
        (pl.lit(edges).search_sorted(pl.col("ruis.dropped"), side="right") - 1)
        .cast(pl.Int64)
        .alias(DROPPED_COLUMN)
    )


def _cantelli(sd: float, alpha: float) -> float:
    """t with P(X ≥ t) ≤ alpha for any X of mean 0 and standard deviation ``sd``."""
    return sd * math.sqrt(1.0 / alpha - 1.0)


def _weighted_margin(weights: np.ndarray, solved: SolvedHistogram, alpha: float) -> float:
    """A bound m with P(Σ_b w_b·N_b > m) ≤ alpha for the bins' independent noises N_b.

    The smaller of a union bound (every |N_b| within OpenDP's accuracy at
    alpha / bins) and Cantelli's inequality on the sum's standard deviation.
    """
    used = weights[weights > 0]
    if used.size == 0:
        return 0.0
    per_bin = scale_to_accuracy(solved.distribution, solved.scale, alpha / used.size)
    union = float(used.sum()) * per_bin if per_bin is not None else math.inf
    sd = noise_sd(solved.distribution, solved.scale) * float(np.sqrt((used**2).sum()))
    return min(union, _cantelli(sd, alpha))


@dataclass(frozen=True)
class DroppedTotals:
    """Estimates from the dropped histogram: the total dropped (point, low, high) and
    the number of units that lost anything (high)."""

    dropped: float
    dropped_low: float
    dropped_high: float
    units_losing_high: float
    histogram: list[float]
    seen: bool
    """Whether any bin stood out of the noise (else the totals rest on nothing seen)."""


def dropped_totals(released: pl.DataFrame, plan: TruncationPlan, alpha: float) -> DroppedTotals:
    """Post-processing of the dropped histogram: each bound holds w.p. ≥ 1 − ``alpha``
    (on the visible bins; see the module docstring)."""
    noisy = released_counts(released, plan.dropped_histogram.keys)
    visible = visible_box(noisy, plan.dropped, whole_windows=True)
    low_w = np.where(visible, plan.bins.low, 0.0)
    high_w = np.where(visible, plan.bins.high, 0.0)
    losing_w = np.where(visible & (plan.bins.low >= 1), 1.0, 0.0)

    def linear(weights: np.ndarray) -> float:
        return max(0.0, float((weights * noisy).sum()))

    point = linear(np.where(visible, plan.bins.middle, 0.0))
    low = max(0.0, linear(low_w) - _weighted_margin(low_w, plan.dropped, alpha))
    high = linear(high_w) + _weighted_margin(high_w, plan.dropped, alpha)
    losing = linear(losing_w) + _weighted_margin(losing_w, plan.dropped, alpha)
    return DroppedTotals(
        dropped=point,
        dropped_low=low,
        dropped_high=high,
        units_losing_high=losing,
        histogram=[float(v) for v in noisy],
        seen=bool(visible[1:].any()) or _stands_out(float(noisy[0]), plan.dropped, noisy.size),
    )


def _all_bins_high(released: pl.DataFrame, plan: TruncationPlan, alpha: float) -> float:
    """An upper bound on the dropped total w.p. ≥ 1 − ``alpha`` over EVERY bin (each unit's
    drop is at most the public most, so no tail is assumed empty)."""
    noisy = released_counts(released, plan.dropped_histogram.keys)
    high = plan.bins.high
    return max(0.0, float((high * noisy).sum())) + _weighted_margin(high, plan.dropped, alpha)


def _stands_out(count: float, solved: SolvedHistogram, bins: int) -> bool:
    """Whether one noisy bin is above OpenDP's accuracy at ``VISIBLE_ALPHA / bins``."""
    threshold = scale_to_accuracy(solved.distribution, solved.scale, VISIBLE_ALPHA / bins)
    return threshold is not None and count > threshold


def _share(kept: float, dropped: float) -> float:
    total = kept + dropped
    return min(1.0, max(0.0, kept / total)) if total > 0 else 1.0


def kept_share_of(kept: float, kept_margin: float, totals: DroppedTotals) -> tuple[float, float]:
    """``(kept share, error bound)`` from the kept total ``kept`` (± ``kept_margin``) and
    the dropped totals: the share's interval is ``[K_lo/(K_lo + D_hi), K_hi/(K_hi + D_lo)]``
    (the share grows with K and falls with D), the bound its largest distance to the point."""
    point = _share(max(kept, 0.0), totals.dropped)
    low = _share(max(kept - kept_margin, 0.0), totals.dropped_high)
    high = _share(max(kept + kept_margin, 0.0), totals.dropped_low)
    return point, max(point - low, high - point)


def cells_sum_margin(distribution: str, scale: float, cells: int, alpha: float) -> float:
    """A bound m with P(|Σ_c N_c| > m) ≤ alpha for ``cells`` independent noises of
    OpenDP's ``distribution`` at ``scale`` (Chebyshev)."""
    sd = noise_sd(distribution, scale) * math.sqrt(cells)
    return sd / math.sqrt(alpha)


def outside_indicator(clamp: tuple[float, float] | tuple[int, int]) -> pl.Expr:
    """Per kept row: 1 if its value lies outside the clamp bounds, else 0 (Int64, named
    ``OUTSIDE_COLUMN``): what the kept-rows histogram counts. Row-wise."""
    low, high = float(clamp[0]), float(clamp[1])
    value = pl.col(VALUE_COLUMN).cast(pl.Float64)
    return ((value < low) | (value > high)).cast(pl.Int64).alias(OUTSIDE_COLUMN)


def run_truncation(
    plan: TruncationPlan,
    query: ResolvedQuery,
    *,
    unit: str,
    frame: pl.LazyFrame | None,
    truncated: pl.DataFrame | None,
    mask: str,
    k: int,
    c: int,
    clamp: tuple[float, float] | tuple[int, int] | None,
    released_total: tuple[float, str, float] | None,
    alpha: float,
    counts: pl.LazyFrame | None = None,
    profile_rows: pl.DataFrame | None = None,
    outside_rows: pl.DataFrame | None = None,
) -> TruncationEstimate:
    """Invoke the truncation measurements and estimate what the bounds (k, c, clamp) dropped.

    ``released_total`` (count, unit_count): the sum of the released cells (before
    any post-processing), OpenDP's noise distribution and scale per cell — the
    kept total, at no extra cost. ``alpha`` splits evenly between the estimates
    each bound combines. ``counts``, if given, is
    :func:`~privacy.truncation.unit_group_counts` of ``frame`` with ``mask`` (computed
    once for the truncation too; the result is the same). Privacy: see the module
    docstring. ``profile_rows``, if given, is :func:`dropped_profile`'s result computed by
    another engine (``frame`` is then not read; ``truncated`` only for sum/mean/quantile);
    ``outside_rows``, if given, is ``truncated.select(outside_indicator(clamp))`` computed
    by another engine (``truncated`` is then not read at all).
    """
    if profile_rows is None:
        assert frame is not None and truncated is not None
        profile_rows = dropped_profile(
            frame,
            truncated,
            unit=unit,
            by=list(query.group_by),
            mask=mask,
            statistic=query.statistic,
            bins=plan.bins,
            counts=counts,
        ).collect()
    released = plan.dropped.measurement(profile_rows.lazy()).collect()
    losses = [plan.dropped.loss]
    totals = dropped_totals(released, plan, alpha / 2)
    record: dict[str, Any] = {
        "dropped_histogram": {
            "edges": list(plan.bins.edges),
            "histogram": totals.histogram,
            "mechanism": plan.dropped.mechanism,
            "noise_scale": plan.dropped.scale,
        }
    }
    clamped: tuple[float, float] | None = None
    if released_total is not None:
        total, distribution, scale = released_total
        kept, kept_margin = total, cells_sum_margin(distribution, scale, query.cells, alpha / 2)
    else:
        assert clamp is not None and plan.kept is not None
        solved = plan.kept.for_rows(query.unit_rows(k, c))  # k·c·D rows per unit
        if outside_rows is None:
            assert truncated is not None
            outside_rows = truncated.select(outside_indicator(clamp))
        sides = released_counts(
            solved.measurement(outside_rows.lazy()).collect(), plan.kept.histogram.keys
        )
        losses.append(solved.loss)
        per_bin = scale_to_accuracy(solved.distribution, solved.scale, alpha / 4) or 0.0
        inside, out = max(float(sides[0]), 0.0), max(float(sides[1]), 0.0)
        kept, kept_margin = inside + out, 2 * per_bin
        share = out / kept if kept > 0 else 0.0
        # out/kept: both within per_bin w.p. 1 − α/2 (union bound)
        low_share = max(0.0, out - per_bin) / max(kept + 2 * per_bin, 1.0)
        high_share = min(1.0, (out + per_bin) / max(kept - 2 * per_bin, 1.0))
        clamped = (share, max(share - low_share, high_share - share))
        record["kept_rows_histogram"] = {
            "histogram": [float(v) for v in sides],
            "mechanism": solved.mechanism,
            "noise_scale": solved.scale,
        }
    bias: float | None = None
    bias_alpha = alpha * BIAS_ALPHA_SHARE
    if plan.losing is not None and plan.losing_histogram is not None:
        # unit_count: a unit adds at most 1 to any cell's bias, so the number of units
        # that lost anything bounds every cell's: one noisy count, no tail assumption.
        # Each of them lost at least one (unit, group): a floor under the dropped total.
        losing = (pl.col(DROPPED_COLUMN) > 0).cast(pl.Int64).alias(LOSING_COLUMN)
        counted = released_counts(
            plan.losing.measurement(profile_rows.lazy().select(losing)).collect(),
            plan.losing_histogram.keys,
        )
        losses.append(plan.losing.loss)
        margin = scale_to_accuracy(plan.losing.distribution, plan.losing.scale, bias_alpha)
        units = max(0.0, float(counted[1]))
        bias = units + (margin if margin is not None else math.inf)
        floor_margin = scale_to_accuracy(plan.losing.distribution, plan.losing.scale, alpha / 2)
        floor = max(0.0, units - (floor_margin or 0.0))
        totals = replace(
            totals,
            dropped=max(totals.dropped, units),
            dropped_low=max(totals.dropped_low, floor),
            dropped_high=max(totals.dropped_high, bias),
        )
        record["losing_histogram"] = {
            "histogram": [float(v) for v in counted],
            "mechanism": plan.losing.mechanism,
            "noise_scale": plan.losing.scale,
        }
    if not totals.seen:
        # nothing stood out of the noise: the share is bounded only by what can be
        # dropped at all (the public most per unit, times the units)
        totals = replace(totals, dropped_high=math.inf)
    share, share_bound = kept_share_of(kept, kept_margin, totals)
    if query.statistic in ("count", "quantile"):
        # rows: as far as the histogram sees (see the module docstring); when it sees
        # nothing, every bin up to the public most (the dataset's max_rows) is counted with
        # its noise: a wide bound, but one that rests on no assumption
        seen = dropped_totals(released, plan, bias_alpha)
        bias = seen.dropped_high if seen.seen else _all_bins_high(released, plan, bias_alpha)
    if not can_drop(query, k):
        # the k used (an automatic choice) reaches every cell of a unit count: each unit
        # kept every group it has, so nothing was dropped — a fact of public k and cells,
        # not of the data, so stating it exactly reveals nothing the noisy estimate hid
        share, share_bound, bias = 1.0, 0.0, 0.0
    return TruncationEstimate(
        kept_share=share,
        kept_share_error_bound=share_bound,
        cost=plan.cost,
        model=plan.model,
        opendp_loss=sum(losses),
        clamped_share=clamped[0] if clamped is not None else None,
        clamped_share_error_bound=clamped[1] if clamped is not None else None,
        bias_bound=bias,
        record=record,
    )
