"""Query validation (shape by pydantic, meaning by InvalidQuery) and the canonical form."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from privacy import (
    AccuracyTarget,
    DatasetMetadata,
    EpsilonLoss,
    InvalidQuery,
    QueryRequest,
    RhoLoss,
    canonical_query,
    plan_query,
)
from tests.factories import MOBILITY_MUNICIPALITIES, make_metadata


def request(**fields: Any) -> QueryRequest:
    body: dict[str, Any] = {
        "dataset": "mobility_events",
        "statistic": "unit_count",
        "privacy": {"epsilon": 0.5},
    }
    body.update(fields)
    return QueryRequest.model_validate(body)


# --- shape: rejected by pydantic before any planning ------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        '{"dataset": "mobility_events", "statistic": "count", "privacy": {"epsilon": 1e309}}',
        '{"dataset": "mobility_events", "statistic": "count", "privacy": {"rho": 1e309}}',
        '{"dataset": "mobility_events", "statistic": "count", "privacy": {"max_error": 1e309}}',
        '{"dataset": "mobility_events", "statistic": "count", "privacy": {"epsilon": "NaN"}}',
        '{"dataset": "mobility_events", "statistic": "count", "privacy": {"epsilon": "Infinity"}}',
        '{"dataset": "mobility_events", "statistic": "count", "privacy": {"epsilon": 0}}',
        '{"dataset": "mobility_events", "statistic": "count", "privacy": {"epsilon": -1}}',
        '{"dataset": "mobility_events", "statistic": "count", "privacy": {"rho": 0}}',
        '{"dataset": "mobility_events", "statistic": "count", "privacy": {"max_error": 0}}',
        '{"dataset": "mobility_events", "statistic": "count", '
        '"privacy": {"max_error": 5, "alpha": 1}}',
        '{"dataset": "mobility_events", "statistic": "count", '
        '"privacy": {"max_error": 5, "alpha": 0}}',
        '{"dataset": "mobility_events", "statistic": "count", "privacy": {"epsilon": 1, "rho": 1}}',
        '{"dataset": "mobility_events", "statistic": "count", "privacy": {}}',
        '{"dataset": "mobility_events", "statistic": "sum", "column": "dwell_minutes", '
        '"bounds": [0, 1e309], "privacy": {"epsilon": 1}}',
        '{"dataset": "mobility_events", "statistic": "quantile", "column": "hour", "q": 1e309, '
        '"privacy": {"epsilon": 1}}',
        '{"dataset": "mobility_events", "statistic": "count", "where": '
        '[{"column": "dwell_minutes", "op": "lt", "value": 1e309}], "privacy": {"epsilon": 1}}',
        '{"dataset": "mobility_events", "statistic": "count", "where": '
        '[{"column": "municipality", "op": "in", "value": []}], "privacy": {"epsilon": 1}}',
        '{"dataset": "mobility_events", "statistic": "count", "where": '
        '[{"column": "hour", "op": "between", "value": [1, 2, 3]}], "privacy": {"epsilon": 1}}',
        '{"dataset": "mobility_events", "statistic": "count", "where": '
        '[{"column": "hour", "op": "eq", "value": [1]}], "privacy": {"epsilon": 1}}',
        '{"dataset": "mobility_events", "statistic": "count", "where": '
        '[{"column": "hour", "op": "eq", "value": true}], "privacy": {"epsilon": 1}}',
        '{"dataset": "mobility_events", "statistic": "count", "where": '
        '[{"column": "hour", "op": "like", "value": 1}], "privacy": {"epsilon": 1}}',
        '{"dataset": "mobility_events", "statistic": "median", "privacy": {"epsilon": 1}}',
        '{"dataset": "mobility_events", "statistic": "count", "privacy": {"epsilon": 1}, "x": 1}',
        '{"dataset": "mobility_events", "statistic": "count", "group_by": '
        '["a", "b", "c", "d", "e", "f", "g", "h", "i"], "privacy": {"epsilon": 1}}',
        '{"dataset": "mobility_events", "statistic": "count", "max_partitions_contributed": 0, '
        '"privacy": {"epsilon": 1}}',
        '{"dataset": "mobility_events", "statistic": "count", "column": "x; drop table", '
        '"privacy": {"epsilon": 1}}',
    ],
)
def test_malformed_requests_are_rejected_by_the_model(body: str) -> None:
    with pytest.raises(ValidationError):
        QueryRequest.model_validate_json(body)


def test_python_infinity_is_rejected_too() -> None:
    for privacy in (
        {"epsilon": float("inf")},
        {"rho": float("nan")},
        {"max_error": float("inf")},
        {"max_error": 1.0, "alpha": float("nan")},
    ):
        with pytest.raises(ValidationError):
            request(privacy=privacy)


def test_privacy_variants_parse_to_the_right_type() -> None:
    assert isinstance(request(privacy={"epsilon": 0.5}).privacy, EpsilonLoss)
    assert isinstance(request(privacy={"rho": "0.25"}).privacy, RhoLoss)
    target = request(privacy={"max_error": 10}).privacy
    assert isinstance(target, AccuracyTarget) and target.alpha == 0.05


def test_request_is_frozen() -> None:
    query = request()
    with pytest.raises(ValidationError):
        query.statistic = "count"  # type: ignore[misc]


# --- meaning: InvalidQuery from the public metadata -------------------------------------------

M0, M1 = MOBILITY_MUNICIPALITIES[0], MOBILITY_MUNICIPALITIES[1]
"""Two public keys of the test metadata's ``municipality``."""
NO_KEY = "matches none of the column's public keys"
INVALID: list[tuple[dict[str, Any], str, str]] = [
    ({"statistic": "sum", "column": "nope"}, "pure", "unknown column"),
    ({"statistic": "sum", "column": "device_id"}, "pure", "privacy unit"),
    ({"group_by": ["device_id"]}, "pure", "privacy unit"),
    ({"where": [{"column": "device_id", "op": "eq", "value": "dev-1"}]}, "pure", "privacy unit"),
    ({"group_by": ["nope"]}, "pure", "unknown column"),
    ({"where": [{"column": "nope", "op": "eq", "value": 1}]}, "pure", "unknown column"),
    ({"group_by": ["operator"]}, "pure", "no public keys"),
    ({"group_by": ["dwell_minutes"]}, "pure", "no public keys"),
    ({"group_by": ["day", "day"]}, "pure", "twice"),
    ({"where": [{"column": "municipality", "op": "eq", "value": "GM_NONE"}]}, "pure", NO_KEY),
    ({"where": [{"column": "municipality", "op": "in", "value": ["X", "Y"]}]}, "pure", NO_KEY),
    ({"where": [{"column": "municipality", "op": "gt", "value": "ZZZ"}]}, "pure", NO_KEY),
    ({"where": [{"column": "day", "op": "lt", "value": "2020-01-01"}]}, "pure", NO_KEY),
    (
        {"where": [{"column": "day", "op": "between", "value": ["2020-01-01", "2020-02-01"]}]},
        "pure",
        NO_KEY,
    ),
    ({"statistic": "sum"}, "pure", "needs a 'column'"),
    ({"statistic": "mean"}, "pure", "needs a 'column'"),
    ({"statistic": "quantile", "q": 0.5}, "pure", "needs a 'column'"),
    ({"statistic": "sum", "column": "municipality"}, "pure", "numeric"),
    ({"statistic": "mean", "column": "day"}, "pure", "numeric"),
    ({"statistic": "count", "column": "hour"}, "pure", "takes no 'column'"),
    ({"statistic": "count", "bounds": [0, 1]}, "pure", "takes no 'bounds'"),
    ({"statistic": "count", "q": 0.5}, "pure", "only used by quantile"),
    ({"statistic": "quantile", "column": "hour"}, "pure", "needs 'q'"),
    ({"statistic": "quantile", "column": "hour", "q": 0.0}, "pure", "strictly between"),
    ({"statistic": "quantile", "column": "hour", "q": 1.0}, "pure", "strictly between"),
    ({"statistic": "quantile", "column": "hour", "q": 1.5}, "pure", "strictly between"),
    ({"statistic": "quantile", "column": "hour", "q": -0.1}, "pure", "strictly between"),
    ({"statistic": "sum", "column": "dwell_minutes", "bounds": [10, 0]}, "pure", "lower < upper"),
    ({"statistic": "sum", "column": "dwell_minutes", "bounds": [5, 5]}, "pure", "lower < upper"),
    ({"statistic": "sum", "column": "hour", "bounds": [0.5, 10]}, "pure", "integers"),
    ({"statistic": "sum", "column": "dwell_minutes", "bounds": [0, 1e300]}, "pure", "2^52"),
    ({"where": [{"column": "hour", "op": "eq", "value": "seven"}]}, "pure", "expected an integer"),
    ({"where": [{"column": "hour", "op": "eq", "value": 7.5}]}, "pure", "expected an integer"),
    (
        {"where": [{"column": "municipality", "op": "eq", "value": 363}]},
        "pure",
        "expected a string",
    ),
    (
        {"where": [{"column": "dwell_minutes", "op": "lt", "value": "ten"}]},
        "pure",
        "expected a number",
    ),
    ({"where": [{"column": "day", "op": "eq", "value": 20260301}]}, "pure", "ISO 8601"),
    ({"where": [{"column": "day", "op": "eq", "value": "01-03-2026"}]}, "pure", "ISO date"),
    (
        {"where": [{"column": "seen_at", "op": "ge", "value": "yesterday"}]},
        "pure",
        "ISO 8601 datetime",
    ),
    (
        {"where": [{"column": "day", "op": "between", "value": ["2026-03-05", "2026-03-01"]}]},
        "pure",
        "above",
    ),
    (
        {"where": [{"column": "municipality", "op": "in", "value": ["GM0363", 5]}]},
        "pure",
        "expected a string",
    ),
    ({"privacy": {"rho": 0.1}}, "pure", "pure"),
    ({"privacy": {"epsilon": 0.1}}, "zcdp", "zCDP"),
    (
        {"statistic": "quantile", "column": "hour", "q": 0.5, "privacy": {"max_error": 2}},
        "pure",
        "not supported for quantile",
    ),
    (
        {"statistic": "mean", "column": "hour", "privacy": {"max_error": 2}},
        "pure",
        "needs 'min_cell_rows'",
    ),
    ({"dataset": "other_dataset"}, "pure", "dataset"),
]


@pytest.mark.parametrize(
    ("fields", "model", "message"),
    INVALID,
    ids=[m + "-" + str(i) for i, (_, _, m) in enumerate(INVALID)],
)
def test_invalid_queries_raise_invalid_query(
    metadata: DatasetMetadata, fields: dict[str, Any], model: str, message: str
) -> None:
    with pytest.raises(InvalidQuery) as raised:
        plan_query(request(**fields), metadata, model)  # type: ignore[arg-type]
    assert message in raised.value.detail


def test_a_filter_that_selects_some_public_key_is_accepted(metadata: DatasetMetadata) -> None:
    keys = metadata.columns["municipality"].keys
    assert keys is not None
    first, last = str(keys[0]), str(keys[-1])
    days = metadata.columns["day"].keys
    assert days is not None
    for where in (
        {"column": "municipality", "op": "in", "value": ["GM_NONE", first]},
        {"column": "municipality", "op": "le", "value": first},
        {"column": "municipality", "op": "ge", "value": last},
        {"column": "day", "op": "between", "value": ["2020-01-01", days[0]]},
        {"column": "dwell_minutes", "op": "lt", "value": -1},  # no keys: nothing to check
    ):
        plan_query(request(where=[where]), metadata, "pure")


def test_too_many_key_combinations() -> None:
    wide = make_metadata(
        columns={
            "a": {"type": "integer", "keys": list(range(1001))},
            "b": {"type": "integer", "keys": list(range(1000))},
        }
    )
    with pytest.raises(InvalidQuery, match="1,000,000 key combinations"):
        plan_query(request(group_by=["a", "b"]), wide, "pure")


def test_sum_needs_declared_max_rows() -> None:
    no_max_rows = make_metadata(max_rows=None)
    with pytest.raises(InvalidQuery, match="max_rows"):
        plan_query(request(statistic="sum", column="hour"), no_max_rows, "pure")
    # counts do not need it
    plan_query(request(statistic="count"), no_max_rows, "pure")


def test_sum_needs_bounds_from_query_or_metadata() -> None:
    unbounded = make_metadata(columns={"x": {"type": "float"}})
    with pytest.raises(InvalidQuery, match="clamping bounds"):
        plan_query(request(statistic="sum", column="x"), unbounded, "pure")
    plan = plan_query(request(statistic="sum", column="x", bounds=[0, 5]), unbounded, "pure")
    assert plan.bounds_used["clamp"] == [0.0, 5.0]


def test_opendp_refusal_becomes_invalid_query(metadata: DatasetMetadata) -> None:
    # |bounds| · max_rows could overflow an i64 sum: OpenDP refuses, we say why
    huge = make_metadata(
        columns={"n": {"type": "integer", "bounds": [0, 2**52]}}, max_rows=2**32 - 1
    )
    with pytest.raises(InvalidQuery, match="OpenDP cannot build"):
        plan_query(request(statistic="sum", column="n"), huge, "pure")
    too_many_rows = make_metadata(max_rows=2**40)
    with pytest.raises(InvalidQuery, match="OpenDP's limit"):
        plan_query(request(statistic="sum", column="hour"), too_many_rows, "pure")


# --- the canonical form ------------------------------------------------------------------------


def test_canonical_fills_defaults_and_normalises(metadata: DatasetMetadata) -> None:
    query = request(
        statistic="sum",
        column="dwell_minutes",
        group_by=["municipality", "day"],
        where=[
            {"column": "municipality", "op": "in", "value": ["GM9999", M0, "GM9999"]},
            {"column": "day", "op": "between", "value": ["2026-03-01", "2026-03-07"]},
            {"column": "hour", "op": "ge", "value": 7.0},
        ],
        privacy={"epsilon": "0.50"},
    )
    canonical = canonical_query(query, metadata)
    assert canonical == {
        "dataset": "mobility_events",
        "statistic": "sum",
        "column": "dwell_minutes",
        "q": None,
        "bounds": [0.0, 240.0],
        "group_by": ["municipality", "day"],
        "where": [
            {"column": "day", "op": "between", "value": ["2026-03-01", "2026-03-07"]},
            {"column": "hour", "op": "ge", "value": 7},
            {"column": "municipality", "op": "in", "value": [M0, "GM9999"]},
        ],
        "max_partitions_contributed": 3,
        "max_contributions_per_partition": 1,
        "privacy": {"epsilon": "0.5"},
    }
    json.dumps(canonical)  # JSON-able


def test_canonical_is_insensitive_to_spelling(metadata: DatasetMetadata) -> None:
    first = request(
        where=[
            {"column": "hour", "op": "lt", "value": 9},
            {"column": "day", "op": "eq", "value": "2026-03-02"},
        ],
        group_by=["municipality"],
        max_partitions_contributed=3,
        privacy={"epsilon": 1},
    )
    second = request(
        where=[
            {"column": "day", "op": "eq", "value": "2026-03-02"},
            {"column": "hour", "op": "lt", "value": 9.0},
            {"column": "hour", "op": "lt", "value": 9},
        ],
        group_by=["municipality"],
        privacy={"epsilon": "1.000"},
    )
    assert canonical_query(first, metadata) == canonical_query(second, metadata)
    # group_by order is meaningful (it orders the release's columns)
    a = canonical_query(request(group_by=["municipality", "day"]), metadata)
    b = canonical_query(request(group_by=["day", "municipality"]), metadata)
    assert a != b


def test_canonical_contribution_bounds(metadata: DatasetMetadata) -> None:
    # unit_count counts a unit once per group; without group_by there is one partition
    assert (
        canonical_query(request(max_contributions_per_partition=7), metadata)[
            "max_contributions_per_partition"
        ]
        == 1
    )
    assert (
        canonical_query(request(statistic="count", max_partitions_contributed=5), metadata)[
            "max_partitions_contributed"
        ]
        == 1
    )
    grouped = canonical_query(
        request(
            statistic="count",
            group_by=["municipality"],
            max_partitions_contributed=5,
            max_contributions_per_partition=2,
        ),
        metadata,
    )
    assert (grouped["max_partitions_contributed"], grouped["max_contributions_per_partition"]) == (
        5,
        2,
    )
    # a unit cannot touch more groups than there are key combinations
    few = canonical_query(request(group_by=["day"], max_partitions_contributed=50), metadata)
    assert few["max_partitions_contributed"] == 7


@settings(max_examples=60, deadline=None)
@given(
    epsilon=st.decimals(min_value=Decimal("0.000001"), max_value=Decimal(100), places=6),
    where=st.lists(
        st.sampled_from(
            [
                {"column": "hour", "op": "ge", "value": 6},
                {"column": "hour", "op": "lt", "value": 20.0},
                {"column": "day", "op": "eq", "value": "2026-03-03"},
                {"column": "municipality", "op": "in", "value": [M0, M1]},
                {"column": "dwell_minutes", "op": "between", "value": [1, 2.5]},
            ]
        ),
        max_size=5,
    ),
)
def test_canonical_is_stable_under_reordering(
    epsilon: Decimal, where: list[dict[str, Any]]
) -> None:
    metadata = make_metadata()
    forward = request(where=where, privacy={"epsilon": str(epsilon)})
    backward = request(where=list(reversed(where)), privacy={"epsilon": str(epsilon.normalize())})
    assert canonical_query(forward, metadata) == canonical_query(backward, metadata)
    text = canonical_query(forward, metadata)["privacy"]["epsilon"]
    assert Decimal(text) == epsilon and "E" not in text


@given(
    keys=st.lists(st.integers(-50, 50), min_size=1, max_size=30, unique=True),
    op=st.sampled_from(["eq", "lt", "le", "gt", "ge", "in", "between"]),
    a=st.integers(-60, 60),
    b=st.integers(-60, 60),
)
def test_the_key_check_agrees_with_a_scan_of_the_keys(
    keys: list[int], op: str, a: int, b: int
) -> None:
    from privacy.metadata import ColumnSpec
    from privacy.query import ResolvedFilter, _selects_a_key

    spec = ColumnSpec(type="integer", keys=keys)
    typed: Any = {"in": (a, b), "between": (min(a, b), max(a, b))}.get(op, a)
    tests = {
        "eq": lambda k: k == a,
        "lt": lambda k: k < a,
        "le": lambda k: k <= a,
        "gt": lambda k: k > a,
        "ge": lambda k: k >= a,
        "in": lambda k: k in (a, b),
        "between": lambda k: min(a, b) <= k <= max(a, b),
    }
    expected = any(tests[op](k) for k in keys)
    assert _selects_a_key(ResolvedFilter("x", op, typed, typed), spec) is expected  # type: ignore[arg-type]
