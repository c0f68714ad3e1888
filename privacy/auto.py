"""Automatic contribution and clamping bounds: a small DP release picks them, then the statistic.

A query may leave ``max_partitions_contributed`` (k), ``max_contributions_per_partition``
(c) and, for sum/mean/quantile, the clamping ``bounds`` to Ruis (``"auto"``).
Fixed bounds trade truncation/clamping bias against noise blindly: on
mobility data a fixed k = 3 loses most visitors of busy municipalities, while
a k far above what devices do multiplies the noise. Here a share ``s`` of the
query's cost (default 10%) buys DP estimates of how units contribute, and the
rest pays for the statistic at the bounds those estimates favour.

**What is released to choose** (all noise and all losses come from OpenDP):

1. *Contribution bounds* (k and/or c). A per-unit profile
   (:func:`privacy.truncation.unit_profile`): one row per unit with its number
   of distinct groups ``g`` (after the ``where`` filters, clipped to the
   largest candidate for k; when k is fixed, of the groups kept at that k) and
   its number of rows ``n`` in one of those groups, chosen by a fixed hash
   (without grouping: all its rows), clipped to the largest candidate for c.
   OpenDP releases a histogram of ``(g, n)`` over the public product of
   1..limit (``dp.len()`` grouped with public keys; one row per unit). Only
   the dimensions the choice needs are present (``g`` alone for ``unit_count``).
2. *Clamping bounds*. Candidates are nested intervals inside the column's
   public bounds with geometrically shrinking widths
   (:class:`~privacy.candidates.ClampCandidates`). After truncation at the
   chosen (k, c), each row's distance ``y`` from the candidates' fixed end
   (``x − L``, ``U − x`` or ``|x|``) is binned at the candidate widths and
   OpenDP releases the histogram of bins; a unit has at most ``k·c`` rows there.

**The choosing rule** minimises an estimate of the mean absolute error per
released cell, bias plus noise, and is pure post-processing of the releases
above and of public facts (candidates, OpenDP's noise scales):

- for (k, c): ``E|noise_{k,c}| + (kept_max − kept(k, c)) / cells`` with
  ``kept(k, c) = Σ_{g,n} h(g, n) · min(g, k) · min(n, c)`` (``min(n, c)`` is 1
  for ``unit_count``) — the rows (units, for ``unit_count``) truncation
  removes, per cell, relative to the largest candidates. For ``unit_count``
  this is exactly ``Σ_{j>k} (j − k) h_j / cells``; for rows it assumes a
  unit's groups are about as full as the sampled one. ``E|noise_{k,c}|`` is the
  expected absolute noise of a count over the same cells at the statistic's
  cost, from OpenDP's privacy map at that (k, c) (for ``count`` and
  ``unit_count`` that *is* the statistic; for sum/mean/quantile the
  contribution bounds are chosen as for counting their rows);
- for clamping a sum or mean: ``E|noise_w| + Σ_b h_b · max(0, mid_b − w) / cells``
  where ``mid_b`` is the middle of bin ``b`` and ``E|noise_w|`` the expected
  absolute noise of the sum clamped to candidate ``w`` at the chosen (k, c)
  (a mean divides both terms by about the same row count);
- for clamping a quantile: the clamp costs accuracy only through the distance
  of the quantile outside it and through the spacing of the 128 candidates
  OpenDP chooses among; the rule estimates the quantile from the noisy
  cumulative histogram (raised by two standard deviations of its noise, so the
  clamp covers it with high probability) and minimises
  ``max(0, Q̂ − w) + spacing_w / 2``.

Before the rule, negative noisy counts are taken as 0 and noise-only tails are
cut (:func:`trimmed`: bins beyond the last one that noise alone would exceed
with probability under 0.1%, as in Google's approximate-bounds algorithm), as
the rule weighs high bins most. Bias beyond the largest candidate, or in a tail
too thin to stand out of the noise, is invisible to the rule, and the accuracy
Ruis reports covers noise only, never truncation or clamping bias.

**Privacy argument.** Let ``F`` be the row-wise filters, ``P`` the per-unit
profile and ``T_{k,c}`` the per-unit truncation (see :mod:`privacy.truncation`
for why both keep neighbouring datasets neighbours within the stated bounds).
The query runs, in sequence: ``M_1 = H_1 ∘ P ∘ F`` (the contribution
histogram; OpenDP's map at one row per unit is ≤ ``ε_1``), then with
``(k, c) = choose(M_1's output)`` the clamp histogram
``M_2 = H_2 ∘ bin ∘ T_{k,c} ∘ F`` (``bin`` is row-wise; OpenDP's map at ``k·c``
rows per unit is ≤ ``ε_2`` for every (k, c), because its noise is calibrated
per (k, c) to that target), then with ``w = choose(M_2's output)`` the
statistic ``M_3 = M_{k,c,w} ∘ T_{k,c} ∘ F`` whose OpenDP map at
``Bound(by=group_by, per_group=c, num_groups=k)`` is ≤ ``ε_3`` for every
candidate (it is compiled at that cost for whichever candidate is chosen).
Each step is ε_i-DP (ρ_i-zCDP) whatever the earlier outputs were, so by
adaptive sequential composition the whole release is (ε_1 + ε_2 + ε_3)-DP
(under zCDP, (ρ_1 + ρ_2 + ρ_3)-zCDP). The costs are split exactly:
``ε_1 + ε_2 = floor(s · ε)`` (to 12 decimals) and ``ε_3 = ε − ε_1 − ε_2``, and
before the statistic is released the sum of the three OpenDP maps is checked
(in exact decimals) to be at most ``ε``. Choosing the bounds and the layout of
rows are post-processing. Nothing about the candidates is read from the data.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from typing import Any, cast

import numpy as np
import opendp.prelude as dp
import polars as pl
from opendp.extras.polars import Bound, dp_len

from privacy.candidates import ClampCandidates
from privacy.compile import (
    MeasurementBuilder,
    contribution_bounds,
    mechanism_name,
    opendp_message,
    predicted_scale,
    quantile_candidates,
    solve_global_scale,
)
from privacy.errors import InvalidQuery
from privacy.metadata import MAX_AUTO_LIMIT, DatasetMetadata
from privacy.query import PrivacyModel, ResolvedQuery

dp.enable_features("contrib")

GROUPS_COLUMN = "ruis.groups"
"""Profile column: the unit's number of (kept) groups."""
ROWS_COLUMN = "ruis.rows"
"""Profile column: the unit's number of rows in one of its groups."""
BIN_COLUMN = "ruis.bin"
"""Clamp histogram column: the bin of a row's distance from the candidates' fixed end."""
COUNT_COLUMN = "ruis.count"
COST_QUANTUM = Decimal("1e-12")
QUANTILE_MARGIN_SDS = 2.0
"""The quantile clamp rule raises its target level by this many noise standard deviations."""
TRIM_ALPHA = 1e-3
"""Bins beyond the last one whose noisy count could be pure noise only with probability
below this (over all bins together) are taken as empty (see :func:`trimmed`)."""

NOISE_ONLY = "noise only; truncation and clamping bias not included"
"""What Ruis' reported accuracy covers."""

_SCALE_TO_ACCURACY: dict[str, Callable[[float, float], float]] = {
    "Integer Laplace": dp.discrete_laplacian_scale_to_accuracy,
    "Float Laplace": dp.laplacian_scale_to_accuracy,
    "Integer Gaussian": dp.discrete_gaussian_scale_to_accuracy,
    "Float Gaussian": dp.gaussian_scale_to_accuracy,
}


# --- noise facts (utility only: no privacy rests on these) -------------------------------------


def expected_abs_noise(distribution: str, scale: float) -> float:
    """E|X| of OpenDP's noise ``distribution`` at ``scale``.

    Discrete Laplace, P(x) ∝ exp(−|x|/b): with p = exp(−1/b), E|X| = 2p/(1 − p²);
    Laplace: b; Gaussian: σ·√(2/π); discrete Gaussian: summed exactly for
    small σ, else as the Gaussian.
    """
    if not scale > 0:
        return 0.0
    if distribution == "Integer Laplace":
        p = math.exp(-1.0 / scale)
        return 2.0 * p / (1.0 - p * p)
    if distribution == "Float Laplace":
        return scale
    if distribution == "Integer Gaussian" and scale < 8:
        support = np.arange(-int(40 * scale) - 10, int(40 * scale) + 11, dtype=float)
        weights = np.exp(-(support**2) / (2 * scale * scale))
        return float((np.abs(support) * weights).sum() / weights.sum())
    return scale * math.sqrt(2.0 / math.pi)


def noise_sd(distribution: str, scale: float) -> float:
    """The standard deviation of OpenDP's noise ``distribution`` at ``scale``."""
    return scale * math.sqrt(2.0) if "Laplace" in distribution else scale


def scale_to_accuracy(distribution: str, scale: float, alpha: float) -> float | None:
    """OpenDP's (1 − α) error bound of ``distribution`` at ``scale`` (None when it has none)."""
    convert = _SCALE_TO_ACCURACY.get(distribution)
    return float(convert(scale, alpha)) if convert is not None else None


# --- splitting the cost ------------------------------------------------------------------------


def split_cost(cost: Decimal, share: Decimal, parts: int) -> tuple[list[Decimal], Decimal]:
    """``(selection pieces, statistic cost)``: the pieces sum to ``floor(share · cost)``
    (to 12 decimals), the statistic gets the exact rest, so everything sums to ``cost``."""
    selection = (cost * share).quantize(COST_QUANTUM, rounding=ROUND_FLOOR)
    if parts < 1 or selection < COST_QUANTUM * parts:
        raise InvalidQuery(
            f"the cost {cost} is too small to spend a share of it on choosing automatic bounds"
        )
    piece = (selection / parts).quantize(COST_QUANTUM, rounding=ROUND_FLOOR)
    pieces = [piece] * (parts - 1) + [selection - piece * (parts - 1)]
    return pieces, cost - selection


def decimal_float_at_most(amount: Decimal) -> float:
    """The largest float not above ``amount``."""
    value = float(amount)
    if Decimal(value) > amount:
        value = math.nextafter(value, -math.inf)
    return value


# --- DP histograms over public integer keys ----------------------------------------------------


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
        self.measure = dp.max_divergence() if model == "pure" else dp.zero_concentrated_divergence()

    @staticmethod
    def d_in(rows: int) -> list[Bound]:
        """Each unit has at most ``rows`` rows."""
        return [Bound(by=[], per_group=rows)]

    def build(self, scale: float) -> dp.Measurement:
        """The measurement at OpenDP global scale ``scale``."""
        try:
            return dp.m.make_private_lazyframe(
                input_domain=self.domain,
                input_metric=self.metric,
                output_measure=self.measure,
                lazyframe=self.plan,
                global_scale=scale,
            )
        except dp.OpenDPException as exc:
            raise InvalidQuery(
                f"OpenDP cannot build the selection histogram: {opendp_message(exc)}"
            ) from None

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


# --- statistic noise per candidate, from OpenDP's maps -----------------------------------------


@dataclass(frozen=True, eq=False)
class UnitScaleMeasurement:
    """A statistic's measurement at global scale 1, to predict its noise at any (k, c).

    OpenDP's noise scale is the global scale times ``unit_scale`` and its loss
    ∝ 1/scale (pure) or 1/scale² (zCDP), so at the statistic's cost
    ``target`` and bounds (k, c) the noise scale is
    ``unit_scale · predicted_scale(map(d_in(k, c)), target)``. The chosen
    candidate is then compiled for real; these predictions only rank candidates
    and state the range a preview shows.
    """

    measurement: dp.Measurement = field(repr=False)
    unit_scale: float
    distribution: str
    group_by: tuple[str, ...]

    @classmethod
    def of(cls, builder: MeasurementBuilder, aggregate: str) -> UnitScaleMeasurement:
        """The component ``aggregate`` (``count`` or ``sum``) of ``builder``'s statistic."""
        measurement = builder.build(1.0)
        components = builder.summarize(measurement, 0.05)
        component = next((c for c in components if c.aggregate == aggregate), components[0])
        return cls(
            measurement=measurement,
            unit_scale=component.scale,
            distribution=component.distribution,
            group_by=builder.query.group_by,
        )

    def scale(self, k: int, c: int, target: float, model: PrivacyModel) -> float:
        """The noise scale at bounds (k, c) and cost ``target``."""
        loss = float(self.measurement.map(contribution_bounds(self.group_by, k, c)))
        return self.unit_scale * predicted_scale(loss, target, model)

    def expected_abs(self, k: int, c: int, target: float, model: PrivacyModel) -> float:
        """E|noise| at bounds (k, c) and cost ``target``."""
        return expected_abs_noise(self.distribution, self.scale(k, c, target, model))


def count_proxy(
    query: ResolvedQuery, metadata: DatasetMetadata, model: PrivacyModel
) -> UnitScaleMeasurement:
    """The count of rows over the query's cells (its own statistic for count/unit_count)."""
    counted = ResolvedQuery(
        dataset=query.dataset,
        statistic="count",
        column=None,
        column_type=None,
        q=None,
        bounds=None,
        group_by=query.group_by,
        filters=query.filters,
        max_partitions_contributed=query.max_partitions_contributed,
        max_contributions_per_partition=query.max_contributions_per_partition,
        privacy=query.privacy,
        cells=query.cells,
    )
    return UnitScaleMeasurement.of(MeasurementBuilder(counted, metadata, model), "count")


# --- 1. contribution bounds --------------------------------------------------------------------


@dataclass(frozen=True)
class ContributionChoice:
    """The (k, c) chosen, with the estimated error terms of every candidate."""

    k: int
    c: int
    scores: list[dict[str, float]]
    histogram: list[list[float]]


@dataclass(frozen=True, eq=False)
class ContributionSelection:
    """How k and/or c are chosen: the profile, its DP histogram and the rule's inputs."""

    cost: Decimal
    histogram: Histogram = field(repr=False)
    solved: SolvedHistogram
    groups_column: str | None
    rows_column: str | None
    group_limit: int
    row_limit: int
    partitions: tuple[int, ...]
    contributions: tuple[int, ...]
    fixed_partitions: int | None
    counts_rows: bool
    cells: int
    noise: dict[tuple[int, int], float]
    """Expected |noise| per cell of the (proxy) count at each candidate (k, c)."""

    def choose(self, released: pl.DataFrame) -> ContributionChoice:
        """The candidate (k, c) of least estimated error, from the released histogram."""
        keys = self.histogram.keys
        shape = [len(set(keys[name].to_list())) for name in keys.columns]
        counts = trimmed(released_counts(released, keys).reshape(shape), self.solved).reshape(-1)
        groups = (
            keys[self.groups_column].to_numpy().astype(float)
            if self.groups_column is not None
            else np.ones(keys.height)
        )
        rows = (
            keys[self.rows_column].to_numpy().astype(float)
            if self.rows_column is not None
            else np.ones(keys.height)
        )

        def kept(k: int, c: int) -> float:
            row_factor = np.minimum(rows, c) if self.counts_rows else 1.0
            return float((counts * np.minimum(groups, k) * row_factor).sum())

        most = kept(self.partitions[-1], self.contributions[-1])
        scores: list[dict[str, float]] = []
        best: tuple[float, int, int] | None = None
        for k, c in itertools.product(self.partitions, self.contributions):
            bias = max(0.0, most - kept(k, c)) / self.cells
            noise = self.noise[(k, c)]
            scores.append({"k": k, "c": c, "bias": bias, "noise": noise, "error": bias + noise})
            if best is None or bias + noise < best[0]:
                best = (bias + noise, k, c)
        assert best is not None
        table = [
            [*(float(v) for v in row), float(n)]
            for row, n in zip(keys.iter_rows(), released_counts(released, keys), strict=True)
        ]
        return ContributionChoice(k=best[1], c=best[2], scores=scores, histogram=table)


def plan_contribution_selection(
    query: ResolvedQuery,
    metadata: DatasetMetadata,
    model: PrivacyModel,
    cost: Decimal,
    statistic_cost: Decimal,
) -> ContributionSelection:
    """Compile the contribution histogram at ``cost`` and the candidates' noise at
    ``statistic_cost`` (public metadata only)."""
    auto = query.auto
    assert auto is not None and (auto.partitions is not None or auto.contributions is not None)
    k, c = query.max_partitions_contributed, query.max_contributions_per_partition
    partitions = auto.partitions if auto.partitions is not None else (k,)
    contributions = auto.contributions if auto.contributions is not None else (c,)
    counts_rows = query.statistic != "unit_count"
    need_groups = bool(query.group_by) and k > 1
    need_rows = counts_rows and c > 1
    group_limit = min(k, MAX_AUTO_LIMIT)
    row_limit = min(c, MAX_AUTO_LIMIT)
    keys: dict[str, Sequence[int]] = {}
    if need_groups:
        keys[GROUPS_COLUMN] = range(1, group_limit + 1)
    if need_rows:
        keys[ROWS_COLUMN] = range(1, row_limit + 1)
    histogram = Histogram(keys, model)
    solved = histogram.solve(decimal_float_at_most(cost), rows=1)
    proxy = count_proxy(query, metadata, model)
    target = decimal_float_at_most(statistic_cost)
    noise = {
        (kk, cc): proxy.expected_abs(kk, cc, target, model)
        for kk, cc in itertools.product(partitions, contributions)
    }
    return ContributionSelection(
        cost=cost,
        histogram=histogram,
        solved=solved,
        groups_column=GROUPS_COLUMN if need_groups else None,
        rows_column=ROWS_COLUMN if need_rows else None,
        group_limit=group_limit,
        row_limit=row_limit,
        partitions=partitions,
        contributions=contributions,
        fixed_partitions=k if auto.partitions is None else None,
        counts_rows=counts_rows,
        cells=query.cells,
        noise=noise,
    )


# --- 2. clamping bounds ------------------------------------------------------------------------


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
    _solved: dict[int, SolvedHistogram] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def for_rows(self, rows: int) -> SolvedHistogram:
        """The histogram measurement for at most ``rows`` rows per unit (cached)."""
        with self._lock:
            solved = self._solved.get(rows)
        if solved is None:
            solved = self.histogram.solve(decimal_float_at_most(self.cost), rows=rows)
            with self._lock:
                self._solved[rows] = solved
        return solved

    def solved_at_most_rows(self) -> SolvedHistogram:
        """The measurement for the largest number of rows per unit compiled so far."""
        with self._lock:
            return self._solved[max(self._solved)]

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
        solved = self.for_rows(k * c)
        counts = trimmed(noisy, solved)
        widths = np.array(self.candidates.widths)
        lower_edges = np.concatenate([[0.0], widths[:-1]])
        middles = (lower_edges + widths) / 2
        scores: list[dict[str, Any]] = []
        errors: list[float] = []
        if self.statistic == "quantile":
            level = self._quantile_level(counts, k, c)
            total = counts.sum()
            cumulative = np.cumsum(counts)
            reach = (
                int(np.searchsorted(cumulative, level * total, side="left"))
                if total >= 1
                else len(widths) - 1
            )
            estimate = float(widths[min(reach, len(widths) - 1)])
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
            for index, width in enumerate(widths):
                above = slice(index + 1, None)
                bias = float((counts[above] * (middles[above] - width)).sum()) / self.cells
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
        index = int(np.argmin(errors))
        return ClampChoice(
            index=index,
            bounds=self.candidates.bounds(index),
            scores=scores,
            histogram=[float(v) for v in noisy],
        )

    def _quantile_level(self, counts: np.ndarray, k: int, c: int) -> float:
        """The level of ``y`` the clamp must cover for the quantile, plus the noise margin."""
        assert self.q is not None
        mode = self.candidates.mode
        level = (
            self.q
            if mode == "upper"
            else 1 - self.q
            if mode == "lower"
            else max(self.q, 1 - self.q)
        )
        solved = self.for_rows(k * c)
        total = float(counts.sum())
        if total < 1:
            return 1.0
        sd = noise_sd(solved.distribution, solved.scale) * math.sqrt(len(counts))
        return min(1.0, level + QUANTILE_MARGIN_SDS * sd / total)


def plan_clamp_selection(
    query: ResolvedQuery,
    metadata: DatasetMetadata,
    model: PrivacyModel,
    cost: Decimal,
    statistic_cost: Decimal,
) -> ClampSelection:
    """Compile what choosing the clamp needs, from public metadata only."""
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
        cost=cost,
        candidates=candidates,
        histogram=histogram,
        statistic=query.statistic,
        q=query.q,
        model=model,
        statistic_target=decimal_float_at_most(statistic_cost),
        cells=query.cells,
        sum_noise=sum_noise,
        spacing=tuple(spacing),
    )
    # the largest (k, c), compiled now: its loss is what a preview reports
    selection.for_rows(query.max_partitions_contributed * query.max_contributions_per_partition)
    return selection
