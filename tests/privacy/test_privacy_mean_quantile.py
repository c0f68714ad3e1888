"""The accuracy a mean and a quantile state covers the exact answer as often as it says.

Exact answers are on the same truncated, clamped data (``prepare_frame``), so these
check the noise bound (``covers == "noise"``), not the truncation bias.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import numpy as np
import opendp.prelude as dp
import polars as pl
import pytest
from opendp.extras.polars import DPExpr

from privacy import DatasetMetadata, QueryRequest, execute, plan_query
from privacy.amount import cost_step
from privacy.errors import InvalidQuery
from privacy.execute import prepare_frame
from privacy.mean_accuracy import MeanNoise, bound_at_rows, mean_cell, mean_noise
from privacy.measurement import (
    VALUE_COLUMN,
    MeasurementBuilder,
    fixed_point_bounds,
    key_frame,
    quantile_candidates,
)
from privacy.quantile_accuracy import rank_error_rows, score_fraction
from tests.factories import make_metadata
from tests.support.plans import statistic_plan

_SCALE_TO_ACCURACY = {
    "Float Laplace": dp.laplacian_scale_to_accuracy,
    "Integer Laplace": dp.discrete_laplacian_scale_to_accuracy,
    "Float Gaussian": dp.gaussian_scale_to_accuracy,
    "Integer Gaussian": dp.discrete_gaussian_scale_to_accuracy,
}


def query(**fields: Any) -> QueryRequest:
    body: dict[str, Any] = {"dataset": "mobility_events", "privacy": {"epsilon": 1}}
    body.update(fields)
    return QueryRequest.model_validate(body)


def _mean_query(privacy: dict[str, Any], **fields: Any) -> QueryRequest:
    return query(
        statistic="mean",
        column="dwell_minutes",
        group_by=["municipality"],
        max_contributions_per_partition=3,
        privacy=privacy,
        **fields,
    )


@pytest.mark.parametrize(("model", "privacy"), [("pure", {"epsilon": 1}), ("zcdp", {"rho": 0.1})])
def test_mean_has_dp_means_loss_and_noise_scales(
    metadata: DatasetMetadata, model: str, privacy: dict[str, Any]
) -> None:
    """Released as sum and count, a mean costs what OpenDP's dp.mean costs, at its scales."""
    plan = statistic_plan(_mean_query(privacy), metadata, model)  # type: ignore[arg-type]
    assert plan.query is not None
    builder = MeasurementBuilder(plan.query, metadata, plan.model)
    frame = pl.LazyFrame(schema=builder.schema)
    # under pure DP the float column is summed in fixed point (integers of 1/S): the
    # reference is then OpenDP's dp.mean over those integers
    bounds = (
        fixed_point_bounds((0.0, 240.0), builder.fixed_point)
        if builder.fixed_point is not None
        else (0.0, 240.0)
    )
    assert (builder.fixed_point is not None) == (model == "pure")
    grouped = frame.group_by(["municipality"]).agg(
        DPExpr(pl.col(VALUE_COLUMN)).mean(bounds).alias(VALUE_COLUMN)
    )
    builder.plan = (
        key_frame(plan.query, metadata)
        .lazy()
        .join(grouped, how="left", on=["municipality"], nulls_equal=True)
    )
    scale = builder.solve_scale(float(plan.cost))
    reference = builder.build(scale)
    assert builder.loss(reference) == plan.opendp_loss
    ours = [(c.aggregate, c.distribution, c.scale) for c in plan.components]
    theirs = [(c.aggregate, c.distribution, c.scale) for c in builder.summarize(reference, 0.05)]
    assert sorted(ours) == sorted(theirs)
    assert plan.columns == ["municipality", "value", "lower", "upper"]


def test_mean_cell_interval_holds_whenever_the_noise_is_within_its_bounds() -> None:
    """The algebra of privacy.mean_accuracy on random cells and noise inside (a_s, a_n)."""
    rng = np.random.default_rng(12)
    for lower, upper in [(0.0, 240.0), (-50.0, 10.0), (100.0, 200.0)]:
        noise = MeanNoise(alpha=0.05, sum_bound=300.0, count_bound=7.0, lower=lower, upper=upper)
        for _ in range(2_000):
            n = int(rng.integers(1, 400))
            values = rng.uniform(lower, upper, n)
            exact_mean = float(values.mean())
            noisy_sum = float(values.sum()) + rng.uniform(-300, 300)
            noisy_count = n + int(rng.integers(-7, 8))
            value, low, high = mean_cell(noise, noisy_sum, noisy_count)
            assert lower <= low <= value <= high <= upper
            assert low - 1e-9 <= exact_mean <= high + 1e-9
            # and the data-independent form for cells of at least n rows
            assert abs(value - exact_mean) <= bound_at_rows(noise, n) + 1e-9


@pytest.mark.parametrize(("model", "privacy"), [("pure", {"epsilon": 2}), ("zcdp", {"rho": 0.2})])
def test_mean_intervals_cover_the_exact_mean(
    metadata: DatasetMetadata, events: pl.DataFrame, model: str, privacy: dict[str, Any]
) -> None:
    """Per cell, [lower, upper] holds the exact (truncated, clamped) mean w.p. ≥ 1 − α,
    and its half-width is within the data-independent bound at the cell's row count (same
    event, same odds).

    Over 20 releases × the municipalities with rows (≈ 40 cells each, 800 cell-releases,
    independent noise per cell). If coverage were exactly 0.95 (the guarantee's worst
    case), seeing below 0.93 would have binomial odds ≈ 2·10⁻³; the union bound makes the
    real coverage far higher (measured 0.999–1.0), so a false failure is much rarer.
    """
    plan = statistic_plan(_mean_query(privacy), metadata, model)  # type: ignore[arg-type]
    truncated = prepare_frame(plan, events.lazy()).collect()
    clamped = pl.col(VALUE_COLUMN).clip(0, 240)
    exact = dict(truncated.group_by("municipality").agg(clamped.mean()).iter_rows())
    rows = dict(truncated.group_by("municipality").agg(pl.len()).iter_rows())
    noise = mean_noise(plan.components, 0.05, (0.0, 240.0))
    hits: list[bool] = []
    informative: list[bool] = []
    for _ in range(20):
        result = execute(plan, events.lazy())
        widest = 0.0
        for municipality, value, lower, upper in result.rows:
            assert 0 <= lower <= value <= upper <= 240
            widest = max(widest, value - lower, upper - value)
            if municipality in exact:
                hits.append(lower <= exact[municipality] <= upper)
                # as wide as the data-independent form at the cell's n allows
                spread = bound_at_rows(noise, rows[municipality])
                informative.append(max(value - lower, upper - value) <= spread)
        assert result.accuracy.error_bound == widest and result.accuracy.covers == "noise"
    assert np.mean(hits) >= 0.93
    assert np.mean(informative) >= 0.93


@pytest.mark.parametrize(
    ("model", "privacy", "column", "q"),
    [
        ("pure", {"epsilon": 0.5}, "hour", 0.5),
        ("pure", {"epsilon": 0.5}, "dwell_minutes", 0.25),
        ("zcdp", {"rho": 0.05}, "dwell_minutes", 0.9),
    ],
)
def test_quantile_lies_between_the_exact_order_statistics_at_q_n_plus_minus_r(
    metadata: DatasetMetadata,
    events: pl.DataFrame,
    model: str,
    privacy: dict[str, Any],
    column: str,
    q: float,
) -> None:
    """Per cell, w.p. ≥ 1 − α: x_(⌈qn − t⌉) ≤ released ≤ x_(⌈qn + t⌉), t = r + g.

    g is the best candidate's rank distance (the grid effect, computed here from the
    exact data). 30 releases × 7 days = 210 cell-releases; at coverage exactly 0.95,
    seeing below 0.91 has binomial odds ≈ 3·10⁻³; the union bound over the candidates
    makes real coverage higher (measured 1.0, largest excess 0.5–0.7 r), so false
    failures are much rarer.
    """
    plan = plan_query(
        query(
            statistic="quantile",
            column=column,
            q=q,
            group_by=["day"],
            max_contributions_per_partition=3,
            privacy=privacy,
        ),
        metadata,
        model,  # type: ignore[arg-type]
    )
    r = plan.accuracy.rank_error_bound
    assert r is not None and plan.accuracy.error_bound is None and r > 0
    low, high = plan.bounds_used["clamp"]
    candidates = np.array(
        quantile_candidates((low, high), "integer" if column == "hour" else "float")
    )
    truncated = prepare_frame(plan, events.lazy()).collect()
    cells = {
        key[0]: np.sort(np.clip(group[VALUE_COLUMN].to_numpy(), low, high))
        for key, group in truncated.group_by(["day"])
    }

    def distance(values: np.ndarray[Any, Any], candidate: float) -> float:
        """|#(x < c) + q·#(x = c) − q·n|: OpenDP's score / den."""
        below = np.searchsorted(values, candidate, side="left")
        at_or_below = np.searchsorted(values, candidate, side="right")
        return float(abs(below + q * (at_or_below - below) - q * len(values)))

    grid = {day: min(distance(x, c) for c in candidates) for day, x in cells.items()}
    hits: list[bool] = []
    for _ in range(30):
        for day, value in execute(plan, events.lazy()).rows:
            x = cells[date.fromisoformat(day)]
            t = r + grid[date.fromisoformat(day)]
            n = len(x)
            first = x[max(math.ceil(q * n - t), 1) - 1]
            last = x[min(math.ceil(q * n + t), n) - 1]
            within = first <= value <= last
            assert within or distance(x, value) >= t  # the two statements agree
            hits.append(within and distance(x, value) < t)
    assert np.mean(hits) >= 0.91


def test_score_fraction_is_opendps() -> None:
    """(num, den) as OpenDP 0.16 scores them: its noise scale is 2·k·c·max(num, den − num)/ε."""
    metadata = make_metadata()
    for q in (0.5, 0.25, 0.1, 0.9, 0.3):
        plan = statistic_plan(
            query(
                statistic="quantile",
                column="dwell_minutes",
                q=q,
                group_by=["day"],
                max_contributions_per_partition=2,
            ),
            metadata,
            "pure",
        )
        num, den = score_fraction(q, 100_000)
        assert abs(num / den - q) <= 1 / den
        assert math.isclose(plan.noise_scale, 2 * 3 * 2 * max(num, den - num), rel_tol=1e-9)
        expected = rank_error_rows(plan.noise_scale, 128, 0.05, q, 100_000)
        assert plan.accuracy.rank_error_bound == expected
        assert math.isclose(expected, 12 * math.log(127 / 0.05) * max(num, den - num) / den)


@pytest.mark.parametrize(
    ("model", "min_rows", "max_error"), [("pure", 200, 20.0), ("zcdp", 500, 5.0)]
)
def test_accuracy_first_mean_meets_the_target_at_min_cell_rows(
    metadata: DatasetMetadata,
    events: pl.DataFrame,
    model: str,
    min_rows: int,
    max_error: float,
) -> None:
    """The chosen cost meets the target at n = min_cell_rows, and one step less does not."""
    target = {"max_error": max_error, "alpha": 0.05, "min_cell_rows": min_rows}
    plan = plan_query(_mean_query(target), metadata, model)  # type: ignore[arg-type]
    by_aggregate = {c.aggregate: c for c in plan.components}
    a_sum, a_count = (
        float(_SCALE_TO_ACCURACY[by_aggregate[name].distribution](by_aggregate[name].scale, 0.025))
        for name in ("sum", "count")
    )
    bound = (a_sum + 240 * a_count) / (min_rows - a_count)
    assert plan.accuracy.error_bound is not None
    assert math.isclose(plan.accuracy.error_bound, bound, rel_tol=1e-9) and bound <= max_error
    assert len(plan.cost.normalize().as_tuple().digits) <= 4
    # the next 4-significant-digit cost down (one unit less in the 4th digit, or in the
    # 5th when the cost is a power of ten) no longer meets the target
    below = plan.cost - cost_step(plan.cost - cost_step(plan.cost) / 10)
    cheaper = plan_query(
        _mean_query({"epsilon" if model == "pure" else "rho": str(below)}),
        metadata,
        model,  # type: ignore[arg-type]
    )
    noise = mean_noise(cheaper.components, 0.05, (0.0, 240.0))
    assert bound_at_rows(noise, min_rows) > max_error
    # released: cells with at least min_rows rows have half-width ≤ max_error (w.p. ≥ 1 − α)
    truncated = prepare_frame(plan, events.lazy()).collect()
    rows = dict(truncated.group_by("municipality").agg(pl.len()).iter_rows())
    big = [m for m, n in rows.items() if n >= min_rows]
    assert len(big) >= 5
    hits = [
        max(value - lower, upper - value) <= max_error
        for _ in range(10)
        for m, value, lower, upper in execute(plan, events.lazy()).rows
        if m in big
    ]
    # ≥ 1 − α per cell; measured 1.0 (at 0.95 exactly, below 0.85 has odds < 10⁻³ here)
    assert np.mean(hits) >= 0.85


def test_accuracy_first_mean_with_automatic_bounds(metadata: DatasetMetadata) -> None:
    target = {"max_error": 10.0, "min_cell_rows": 300}
    plan = plan_query(_mean_query(target, bounds="auto"), metadata, "pure")
    assert plan.auto is not None and plan.accuracy.error_bound is not None
    assert plan.accuracy.error_bound <= 10.0  # at the largest candidates, the worst case


@pytest.mark.parametrize(
    ("privacy", "fields", "message"),
    [
        ({"max_error": 5}, {}, "needs 'min_cell_rows'"),
        ({"max_error": 500, "min_cell_rows": 100}, {}, "width of the clamping bounds"),
    ],
)
def test_accuracy_first_mean_refusals(
    metadata: DatasetMetadata, privacy: dict[str, Any], fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidQuery, match=message):
        plan_query(_mean_query(privacy, **fields), metadata, "pure")


def test_min_cell_rows_is_only_for_mean(metadata: DatasetMetadata) -> None:
    with pytest.raises(InvalidQuery, match="only used by mean"):
        plan_query(
            query(statistic="count", privacy={"max_error": 20, "min_cell_rows": 10}),
            metadata,
            "pure",
        )


def test_a_mean_interval_that_misses_the_clamp_is_the_whole_clamp() -> None:
    """[Ŝ/N̂ ∓ h] entirely outside [L, U] can only happen when the noise left its bounds
    (the exact mean always lies in [L, U]): the cell then says [L, U], not [L, L]."""
    from privacy.mean_accuracy import MeanNoise, mean_cell

    noise = MeanNoise(alpha=0.05, sum_bound=100.0, count_bound=5.0, lower=0.0, upper=240.0)
    value, lower, upper = mean_cell(noise, noisy_sum=-9000.0, noisy_count=100.0)
    assert value == 0.0 and (lower, upper) == (0.0, 240.0)
    value, lower, upper = mean_cell(noise, noisy_sum=5000.0, noisy_count=100.0)
    assert lower <= 50.0 <= upper and upper - lower < 240.0  # an ordinary cell narrows
