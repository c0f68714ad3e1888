"""unit_location: the per-unit map (each unit in exactly one group, at its most frequent
key, ties to the smallest), its neighbours, and the noise OpenDP calibrates for it."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy import DatasetMetadata, QueryRequest, execute, plan_query
from privacy.location import unit_locations

KEYS = ["a1", "a2", "a3", "b1", "b2", "c1"]
PARENT = {"a1": "A", "a2": "A", "a3": "A", "b1": "B", "b2": "B", "c1": "C"}

rows_strategy = st.lists(
    st.tuples(
        st.integers(0, 7),  # unit
        st.sampled_from([*KEYS, "zz"]),  # "zz" is not a public key
        st.booleans(),  # matches the filters
    ),
    max_size=60,
)


def _frame(rows: list[tuple[int, str, bool]]) -> pl.LazyFrame:
    return pl.LazyFrame(
        {
            "unit": [f"u{u}" for u, _, _ in rows],
            "nb": [key for _, key, _ in rows],
            "mask": [matches and key in KEYS for _, key, matches in rows],
        },
        schema={"unit": pl.String, "nb": pl.String, "mask": pl.Boolean},
    )


def _expected(rows: list[tuple[int, str, bool]]) -> dict[str, str]:
    """A plain loop: per unit, the key with the most matching rows, ties to the smallest."""
    counts: dict[str, Counter[str]] = {}
    for unit, key, matches in rows:
        if matches and key in KEYS:
            counts.setdefault(f"u{unit}", Counter())[key] += 1
    return {unit: min(counter, key=lambda k: (-counter[k], k)) for unit, counter in counts.items()}


def _located(rows: list[tuple[int, str, bool]], *, parent: bool = False) -> pl.DataFrame:
    return unit_locations(
        _frame(rows),
        unit="unit",
        column="nb",
        mask="mask",
        target="mun" if parent else "nb",
        mapping=PARENT if parent else None,
    ).collect()


@settings(max_examples=300, deadline=None)
@given(rows_strategy)
def test_each_unit_lands_in_exactly_one_group_at_its_most_frequent_key(
    rows: list[tuple[int, str, bool]],
) -> None:
    located = _located(rows)
    units = located.get_column("unit").to_list()
    assert len(units) == len(set(units)), "a unit was placed twice"
    assert dict(located.iter_rows()) == _expected(rows)


@settings(max_examples=200, deadline=None)
@given(rows_strategy)
def test_a_coarser_group_is_the_parent_of_the_most_frequent_key(
    rows: list[tuple[int, str, bool]],
) -> None:
    located = _located(rows, parent=True)
    assert located.columns == ["unit", "mun"]
    assert dict(located.iter_rows()) == {u: PARENT[k] for u, k in _expected(rows).items()}


@settings(max_examples=200, deadline=None)
@given(rows_strategy, st.integers(0, 7))
def test_removing_one_unit_removes_at_most_its_own_row(
    rows: list[tuple[int, str, bool]], removed: int
) -> None:
    """The neighbouring relation OpenDP is told (one row per unit): dropping all rows of
    one unit drops at most that unit's row and changes no other."""
    whole = set(_located(rows).iter_rows())
    without = set(_located([r for r in rows if r[0] != removed]).iter_rows())
    assert without <= whole
    assert {u for u, _ in whole - without} <= {f"u{removed}"}


def _metadata() -> DatasetMetadata:
    return DatasetMetadata.model_validate(
        {
            "name": "events",
            "path": "events.parquet",
            "privacy_unit": "device_id",
            "columns": {
                "nb": {"type": "categorical", "keys": KEYS},
                "mun": {"type": "categorical", "keys": ["A", "B", "C", "D"]},
                "seen_at": {"type": "datetime"},
                "hour": {"type": "derived", "from": "seen_at", "part": "hour"},
            },
            "max_partitions_contributed": "auto",
            "max_contributions_per_partition": "auto",
            "hierarchy": {"nb": {"parent": "mun", "map": PARENT}},
        }
    )


def _query(**fields: Any) -> QueryRequest:
    body: dict[str, Any] = {
        "dataset": "events",
        "statistic": "unit_count",
        "group_by": ["nb"],
        "unit_location": {"column": "nb", "rule": "most_frequent"},
        "privacy": {"epsilon": 1},
    }
    body.update(fields)
    return QueryRequest.model_validate(body)


@pytest.mark.parametrize("epsilon", [0.1, 0.5, 1.0, 3.0])
def test_pure_noise_scale_is_one_over_epsilon(epsilon: float) -> None:
    """Sensitivity 1 (one row per unit): OpenDP's discrete Laplace at scale 1/ε, all of the
    cost on the statistic (nothing is dropped, so nothing is spent estimating drops)."""
    plan = plan_query(_query(privacy={"epsilon": epsilon}), _metadata(), "pure")
    assert plan.mechanism == "discrete_laplace"
    assert plan.noise_scale == pytest.approx(1 / epsilon, rel=1e-9)
    assert plan.truncation is None and plan.auto is None
    assert plan.opendp_loss <= epsilon
    assert plan.accuracy.covers == "noise_and_bias" and plan.accuracy.bias_bound == 0.0


@pytest.mark.parametrize("rho", [0.05, 0.5, 2.0])
def test_zcdp_noise_scale_is_the_gaussian_one(rho: float) -> None:
    """ρ-zCDP: OpenDP's discrete Gaussian with L2 sensitivity 1, σ = 1/√(2ρ)."""
    plan = plan_query(_query(privacy={"rho": rho}), _metadata(), "zcdp")
    assert plan.mechanism == "discrete_gaussian"
    assert plan.noise_scale == pytest.approx(1 / math.sqrt(2 * rho), rel=1e-9)
    assert plan.opendp_loss <= rho


def test_coarser_level_costs_the_same() -> None:
    plan = plan_query(_query(group_by=["mun"]), _metadata(), "pure")
    assert plan.noise_scale == pytest.approx(1.0, rel=1e-9)
    assert plan.columns == ["mun", "value"]


def test_release_counts_every_unit_once_at_its_home() -> None:
    rows = [(u, KEYS[(u * 7 + i) % 6], True) for u in range(40) for i in range(u % 5 + 1)]
    frame = _frame(rows).rename({"unit": "device_id"}).drop("mask")
    frame = frame.with_columns(
        pl.lit(None, dtype=pl.Datetime("us")).alias("seen_at"),
        pl.lit(None, dtype=pl.String).alias("mun"),
        pl.lit(None, dtype=pl.Int64).alias("hour"),
    )
    plan = plan_query(_query(privacy={"epsilon": 50}), _metadata(), "pure")
    result = execute(plan, frame)
    exact = Counter(_expected(rows).values())
    released = {key: value for key, value in result.rows}
    assert list(released) == KEYS  # every public key, whatever the data
    # at ε = 50 the noise exceeds 1 with probability < 2·e^-50: the values are exact
    assert released == {key: float(exact.get(key, 0)) for key in KEYS}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"statistic": "count"}, "applies to unit_count"),
        ({"group_by": ["hour"]}, "group_by must be one of"),
        ({"max_partitions_contributed": 2}, "does not apply"),
        ({"unit_location": {"column": "seen_at"}, "group_by": ["seen_at"]}, "public keys"),
        ({"auto_share": 0.2}, "auto_share"),
    ],
)
def test_refused_combinations(fields: dict[str, Any], message: str) -> None:
    from privacy.errors import InvalidQuery

    with pytest.raises(InvalidQuery, match=message):
        plan_query(_query(**fields), _metadata(), "pure")


def test_accuracy_first_buys_the_smallest_cost_meeting_the_target() -> None:
    """A target of ±10 at α = 0.05 on a sensitivity-1 count: OpenDP's discrete Laplace
    accuracy gives the scale, the cost is its ε rounded up to 4 digits, and a step less
    would miss the target."""
    import opendp.prelude as dp

    plan = plan_query(_query(privacy={"max_error": 10, "alpha": 0.05}), _metadata(), "pure")
    assert plan.accuracy.error_bound is not None and plan.accuracy.error_bound <= 10
    epsilon = float(plan.cost)
    cheaper = epsilon - 10 ** (math.floor(math.log10(epsilon)) - 3)
    assert dp.discrete_laplacian_scale_to_accuracy(1 / cheaper, 0.05) > 10
    assert plan.noise_scale == pytest.approx(1 / epsilon, rel=1e-9)


def test_the_canonical_form_can_be_asked_again() -> None:
    """A release's ``query`` (its canonical form) sent back is the same query."""
    from privacy.query import canonical_query

    metadata = _metadata()
    for fields in ({}, {"group_by": ["mun"]}, {"rollup": ["mun"]}):
        canonical = canonical_query(_query(**fields), metadata)
        again = QueryRequest.model_validate(canonical)
        assert canonical_query(again, metadata) == canonical


def test_a_residents_rollup_covers_the_truth_at_both_levels() -> None:
    plan = plan_query(_query(rollup=["mun"]), _metadata(), "pure")
    assert plan.accuracy.covers == "noise_and_bias" and plan.accuracy.bias_bound == 0.0
    assert [level.level for level in plan.accuracy.levels or ()] == ["nb", "mun"]
    assert all(level.bias_bound == 0.0 for level in plan.accuracy.levels or ())
