"""Noise scales against sensitivities derived by hand, and statistical checks of releases.

Sensitivities here are derived from the contribution bounds, not read from
OpenDP: after truncation a unit has rows in at most k groups and at most c rows
per group, so a count moves by ≤ c in each of ≤ k cells (ℓ1 k·c, ℓ2 √k·c), a
unit count by ≤ 1 in ≤ k cells (ℓ1 k, ℓ2 √k), a sum clamped to [L, U] by
≤ c·max(|L|, |U|) per cell. Pure DP: (discrete) Laplace scale = ℓ1/ε. zCDP:
(discrete) Gaussian σ = ℓ2/√(2ρ), where ε (ρ) is the statistic's part of the cost:
the rest (``TRUNCATION_SHARE``) estimates what the bounds dropped (``privacy.kept``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import polars as pl
import pytest

from privacy import DatasetMetadata, Plan, QueryRequest, execute, plan_query
from privacy.kept import TRUNCATION_SHARE

STAT = float(1 - TRUNCATION_SHARE)
"""The share of a cost the statistic gets (the rest estimates what the bounds drop)."""

ExactFn = Callable[[Plan, pl.DataFrame], dict[tuple[Any, ...], float]]


def query(**fields: Any) -> QueryRequest:
    body: dict[str, Any] = {
        "dataset": "mobility_events",
        "statistic": "unit_count",
        "group_by": ["municipality"],
        "privacy": {"epsilon": 1},
    }
    body.update(fields)
    return QueryRequest.model_validate(body)


def discrete_laplace_pmf(scale: float, support: int = 400) -> tuple[np.ndarray, np.ndarray]:
    r = math.exp(-1.0 / scale)
    x = np.arange(-support, support + 1)
    return x, (1 - r) / (1 + r) * r ** np.abs(x)


def discrete_gaussian_pmf(sigma: float, support: int = 400) -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(-support, support + 1)
    weights = np.exp(-(x.astype(float) ** 2) / (2 * sigma**2))
    return x, weights / weights.sum()


def pooled_errors(plan: Plan, events: pl.DataFrame, exact: ExactFn, releases: int) -> np.ndarray:
    """Released − exact (on the same truncated data), pooled over several releases."""
    truth = exact(plan, events)
    errors: list[float] = []
    for _ in range(releases):
        for row in execute(plan, events.lazy()).rows:
            errors.append(row[-1] - truth[tuple(row[:-1])])
    return np.array(errors)


def check_against_pmf(
    errors: np.ndarray, x: np.ndarray, pmf: np.ndarray, error_bound: float
) -> None:
    n = len(errors)
    assert n >= 200
    # coverage of OpenDP's 95% bound (expected ≥ 95%; 90% leaves ~3.5 sd of slack)
    assert np.mean(np.abs(errors) <= error_bound) >= 0.90
    # mean absolute error within 4 standard errors of the exact value from the pmf
    mean_abs = float(np.sum(np.abs(x) * pmf))
    sd_abs = math.sqrt(float(np.sum(x.astype(float) ** 2 * pmf)) - mean_abs**2)
    band = 4 * sd_abs / math.sqrt(n)
    assert abs(float(np.mean(np.abs(errors))) - mean_abs) <= band, (
        np.mean(np.abs(errors)),
        mean_abs,
        band,
    )
    # exact answers are not what is returned: only as often as the noise is 0
    p_zero = float(pmf[x == 0][0])
    zero_rate = float(np.mean(errors == 0))
    assert zero_rate <= p_zero + 4 * math.sqrt(p_zero * (1 - p_zero) / n)
    assert zero_rate < 0.5
    # unbiased
    sd = math.sqrt(float(np.sum(x.astype(float) ** 2 * pmf)))
    assert abs(float(np.mean(errors))) <= 4 * sd / math.sqrt(n)


# --- statistical tests -------------------------------------------------------------------------


def test_unit_count_pure_epsilon_1_k_3(
    metadata: DatasetMetadata, events: pl.DataFrame, exact: ExactFn
) -> None:
    plan = plan_query(query(max_partitions_contributed=3), metadata, "pure")
    assert plan.mechanism == "discrete_laplace"
    assert plan.noise_scale == pytest.approx(3.0 / STAT)  # sensitivity k = 3, ε = STAT
    assert plan.cost == 1 and plan.opendp_loss <= 1.0
    assert plan.accuracy.alpha == 0.05 and plan.accuracy.error_bound is not None
    errors = pooled_errors(plan, events, exact, releases=6)  # 6 × 40 = 240 cells
    x, pmf = discrete_laplace_pmf(3.0 / STAT)
    # OpenDP's 95% bound matches the pmf: P(|X| > bound) ≤ 5%
    assert float(np.sum(pmf[np.abs(x) > plan.accuracy.error_bound])) <= 0.05
    check_against_pmf(errors, x, pmf, plan.accuracy.error_bound)


def test_unit_count_zcdp_rho(
    metadata: DatasetMetadata, events: pl.DataFrame, exact: ExactFn
) -> None:
    rho, k = 0.125, 3
    plan = plan_query(query(max_partitions_contributed=k, privacy={"rho": rho}), metadata, "zcdp")
    assert plan.mechanism == "discrete_gaussian"
    expected_sigma = math.sqrt(k) / math.sqrt(2 * rho * STAT)  # ℓ2 sensitivity √k
    assert plan.noise_scale == pytest.approx(expected_sigma, rel=1e-9)
    assert plan.opendp_loss <= rho
    assert plan.epsilon_delta is not None
    epsilon, delta = plan.epsilon_delta
    assert delta == metadata.delta and 0 < epsilon < 10
    assert plan.accuracy.error_bound is not None
    errors = pooled_errors(plan, events, exact, releases=6)
    x, pmf = discrete_gaussian_pmf(plan.noise_scale)
    check_against_pmf(errors, x, pmf, plan.accuracy.error_bound)


def test_count_with_c_rows_per_group(
    metadata: DatasetMetadata, events: pl.DataFrame, exact: ExactFn
) -> None:
    k, c, epsilon = 2, 3, 2.0
    plan = plan_query(
        query(
            statistic="count",
            max_partitions_contributed=k,
            max_contributions_per_partition=c,
            privacy={"epsilon": epsilon},
        ),
        metadata,
        "pure",
    )
    assert plan.noise_scale == pytest.approx(k * c / (epsilon * STAT), rel=1e-12)
    assert plan.accuracy.error_bound is not None
    errors = pooled_errors(plan, events, exact, releases=5)
    check_against_pmf(errors, *discrete_laplace_pmf(plan.noise_scale), plan.accuracy.error_bound)


# --- scales against hand-derived sensitivities ----------------------------------------------


@pytest.mark.parametrize(("k", "c"), [(1, 1), (3, 1), (3, 2), (5, 4)])
@pytest.mark.parametrize("statistic", ["count", "unit_count"])
def test_count_scales(metadata: DatasetMetadata, statistic: str, k: int, c: int) -> None:
    per_cell = c if statistic == "count" else 1
    pure = plan_query(
        query(
            statistic=statistic,
            max_partitions_contributed=k,
            max_contributions_per_partition=c,
            privacy={"epsilon": "0.5"},
        ),
        metadata,
        "pure",
    )
    assert pure.mechanism == "discrete_laplace"
    assert pure.noise_scale == pytest.approx(k * per_cell / (0.5 * STAT), rel=1e-12)
    zcdp = plan_query(
        query(
            statistic=statistic,
            max_partitions_contributed=k,
            max_contributions_per_partition=c,
            privacy={"rho": "0.02"},
        ),
        metadata,
        "zcdp",
    )
    assert zcdp.mechanism == "discrete_gaussian"
    assert zcdp.noise_scale == pytest.approx(
        math.sqrt(k) * per_cell / math.sqrt(2 * 0.02 * STAT), rel=1e-9
    )
    assert zcdp.bounds_used["max_partitions_contributed"] == k


def test_integer_sum_scales(metadata: DatasetMetadata) -> None:
    k, c = 3, 2
    fields = {
        "statistic": "sum",
        "column": "hour",
        "bounds": [-5, 20],
        "max_partitions_contributed": k,
        "max_contributions_per_partition": c,
    }
    pure = plan_query(query(**fields, privacy={"epsilon": 2}), metadata, "pure")
    assert pure.mechanism == "discrete_laplace"
    assert pure.noise_scale == pytest.approx(k * c * 20 / (2 * STAT), rel=1e-12)
    zcdp = plan_query(query(**fields, privacy={"rho": "0.5"}), metadata, "zcdp")
    assert zcdp.mechanism == "discrete_gaussian"
    assert zcdp.noise_scale == pytest.approx(
        math.sqrt(k) * c * 20 / math.sqrt(1.0 * STAT), rel=1e-9
    )


def test_float_sum_scales(metadata: DatasetMetadata) -> None:
    """Float sums: in fixed point under pure DP (exactly the sensitivity); under zCDP OpenDP's
    float sum adds a small allowance for float rounding (it grows with max_rows²)."""
    k, c = 3, 1
    fields = {
        "statistic": "sum",
        "column": "dwell_minutes",
        "max_partitions_contributed": k,
        "max_contributions_per_partition": c,
    }
    pure = plan_query(query(**fields, privacy={"epsilon": 1}), metadata, "pure")
    # pure DP sums a float column in fixed point (integers of 1/S): no float allowance
    assert pure.mechanism == "discrete_laplace" and pure.fixed_point == 2**20
    hand = k * c * 240 / STAT
    assert pure.noise_scale == pytest.approx(hand, rel=1e-12)
    zcdp = plan_query(query(**fields, privacy={"rho": "0.5"}), metadata, "zcdp")
    assert zcdp.mechanism == "gaussian"
    hand = math.sqrt(k) * c * 240 / math.sqrt(STAT)
    assert hand <= zcdp.noise_scale <= hand * 1.001
    assert pure.bounds_used["max_rows"] == metadata.max_rows


def test_mean_scales_split_the_cost(metadata: DatasetMetadata) -> None:
    """A mean is a noisy sum and a noisy count; OpenDP spends ε/2 on each."""
    k, epsilon = 3, 1.0
    plan = plan_query(
        query(
            statistic="mean",
            column="hour",
            max_partitions_contributed=k,
            privacy={"epsilon": epsilon},
        ),
        metadata,
        "pure",
    )
    by_aggregate = {c.aggregate: c for c in plan.components}
    assert set(by_aggregate) == {"sum", "count"}
    assert by_aggregate["sum"].scale == pytest.approx(k * 23 / (epsilon * STAT / 2), rel=1e-9)
    assert by_aggregate["count"].scale == pytest.approx(k / (epsilon * STAT / 2), rel=1e-9)
    assert plan.noise_scale == by_aggregate["sum"].scale
    assert plan.accuracy.error_bound is None  # depends on the private cell size
    assert all(c.error_bound is not None for c in plan.components)


@pytest.mark.parametrize("q", [0.5, 0.25, 0.75, 0.125])
def test_quantile_scales(metadata: DatasetMetadata, q: float) -> None:
    """OpenDP's integer quantile score, for q = a/d, moves by ≤ max(a, d − a) per row.

    Its noisy-max selection (scores not monotonic) is ε-DP at scale 2·Δ/ε
    (exponential noise) and ρ-zCDP at σ = 2·Δ₂/√(8ρ) (Gumbel), Δ over k·c rows.
    """
    k, c = 3, 2
    fraction = Fraction(q)
    score_sensitivity = max(fraction.numerator, fraction.denominator - fraction.numerator)
    fields = {
        "statistic": "quantile",
        "column": "hour",
        "q": q,
        "max_partitions_contributed": k,
        "max_contributions_per_partition": c,
    }
    pure = plan_query(query(**fields, privacy={"epsilon": 1}), metadata, "pure")
    assert pure.mechanism == "exponential"
    assert pure.noise_scale == pytest.approx(2 * score_sensitivity * k * c / STAT, rel=1e-9)
    zcdp = plan_query(query(**fields, privacy={"rho": "0.5"}), metadata, "zcdp")
    assert zcdp.mechanism == "report_noisy_max_gumbel"
    assert zcdp.noise_scale == pytest.approx(
        2 * score_sensitivity * math.sqrt(k) * c / math.sqrt(8 * 0.5 * STAT), rel=1e-9
    )
    assert pure.accuracy.error_bound is None
    assert pure.bounds_used["quantile_candidates"] == 24


def test_effective_k_is_capped_by_key_count(metadata: DatasetMetadata) -> None:
    plan = plan_query(query(group_by=["day"], max_partitions_contributed=50), metadata, "pure")
    assert plan.noise_scale == 7.0  # 7 days: a unit can touch at most 7 cells


def test_explicit_cost_is_charged_exactly(metadata: DatasetMetadata) -> None:
    for amount in ("0.1", "0.3", "1.7", "0.000123456789"):
        plan = plan_query(query(privacy={"epsilon": amount}), metadata, "pure")
        assert plan.cost == Decimal(amount) and str(plan.cost) == amount
        assert plan.opendp_loss <= float(amount)
        assert Decimal(plan.opendp_loss) <= plan.cost  # exactly, not just as floats
        assert plan.opendp_loss == pytest.approx(float(amount), rel=1e-9)


def test_quantile_scale_grows_with_contributions(metadata: DatasetMetadata) -> None:
    """For q that is not a dyadic fraction OpenDP's score denominator is large; scale ∝ k·c."""

    def scale(k: int, c: int, model: str) -> float:
        privacy = {"epsilon": 1} if model == "pure" else {"rho": "0.5"}
        return plan_query(
            query(
                statistic="quantile",
                column="dwell_minutes",
                q=0.9,
                max_partitions_contributed=k,
                max_contributions_per_partition=c,
                privacy=privacy,
            ),
            metadata,
            model,
        ).noise_scale  # type: ignore[arg-type]

    assert scale(3, 2, "pure") == pytest.approx(6 * scale(1, 1, "pure"), rel=1e-9)
    assert scale(3, 2, "zcdp") == pytest.approx(2 * math.sqrt(3) * scale(1, 1, "zcdp"), rel=1e-9)


def test_a_float_sum_over_many_rows_has_only_its_sensitivity_as_noise() -> None:
    """OpenDP's float sum allowance grows with max_rows and the cells (at 14 million rows and
    40 cells it would be many times the sensitivity); the fixed-point sum has none, and its
    rounding moves each row by at most 2⁻²¹ of a unit."""
    from tests.factories import make_metadata

    metadata = make_metadata(max_rows=14_000_000)
    fields = {
        "statistic": "sum",
        "column": "dwell_minutes",
        "max_partitions_contributed": 1,
        "max_contributions_per_partition": 1,
    }
    plan = plan_query(query(**fields, privacy={"epsilon": 1}), metadata, "pure")
    assert plan.fixed_point is not None and plan.fixed_point >= 2**10
    assert plan.noise_scale == pytest.approx(240 / STAT, rel=1e-12)
    zcdp = plan_query(query(**fields, privacy={"rho": "0.5"}), metadata, "zcdp")
    ideal = 240 / math.sqrt(2 * 0.5 * STAT)  # σ at the sensitivity alone
    assert zcdp.fixed_point is None and zcdp.noise_scale > 1.2 * ideal  # OpenDP's allowance
    from privacy.measurement import VALUE_COLUMN, measurement_input

    frame = pl.LazyFrame({VALUE_COLUMN: [0.1, 239.99999, 500.0, -3.0]})
    fixed = measurement_input(frame, (0.0, 240.0), plan.fixed_point).collect()
    back = fixed[VALUE_COLUMN].to_numpy() / plan.fixed_point
    assert np.allclose(back, [0.1, 239.99999, 240.0, 0.0], atol=1 / plan.fixed_point)
