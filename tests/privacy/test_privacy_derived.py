"""Derived time columns and hierarchies in the public metadata: implied keys, values
computed from the source column exactly as declared, and refused declarations."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from pydantic import ValidationError

from privacy import DatasetMetadata, QueryRequest, execute, plan_query
from privacy.data import derived_expression, frame_schema, with_derived
from privacy.metadata import derived_keys
from tests.factories import make_events, make_metadata

DERIVED = {
    "hour": {"type": "derived", "from": "seen_at", "part": "hour"},
    "weekday": {"type": "derived", "from": "seen_at", "part": "weekday"},
    "date": {
        "type": "derived",
        "from": "seen_at",
        "part": "date",
        "range": ["2026-03-01", "2026-03-07"],
    },
    "week": {
        "type": "derived",
        "from": "seen_at",
        "part": "iso_week",
        "range": ["2026-03-01", "2026-03-31"],
    },
    "month": {
        "type": "derived",
        "from": "day",
        "part": "month",
        "range": ["2026-02-20", "2026-04-02"],
    },
}


def _metadata(**extra: Any) -> DatasetMetadata:
    columns = dict(make_metadata().model_dump(mode="json", by_alias=True)["columns"])
    del columns["hour"]  # the derived hour replaces the stored one
    columns.update(DERIVED)
    columns.update(extra)
    return make_metadata(columns=columns)


def test_implied_keys() -> None:
    metadata = _metadata()
    assert metadata.columns["hour"].keys == list(range(24))
    assert metadata.columns["hour"].bounds == (0, 23)
    assert metadata.columns["weekday"].keys == [1, 2, 3, 4, 5, 6, 7]
    assert metadata.columns["date"].keys == [f"2026-03-0{d}" for d in range(1, 8)]
    # 2026-03-01 is a Sunday: ISO week 9; 2026-03-31 a Tuesday of week 14
    assert metadata.columns["week"].keys == [f"2026-W{w:02d}" for w in range(9, 15)]
    assert metadata.columns["month"].keys == ["2026-02", "2026-03", "2026-04"]
    assert [metadata.columns[n].value_type for n in DERIVED] == [
        "integer",
        "integer",
        "date",
        "categorical",
        "categorical",
    ]
    assert derived_keys("iso_week", date(2020, 12, 28), date(2021, 1, 4)) == [
        "2020-W53",
        "2021-W01",
    ]


def test_stored_form_is_the_declaration() -> None:
    """Keys and bounds are implied, so the stored (and shown) form is what was declared,
    and reading it back gives the same metadata and digest."""
    metadata = _metadata()
    stored = metadata.model_dump(mode="json")
    assert stored["columns"]["week"] == DERIVED["week"] | {"range": ["2026-03-01", "2026-03-31"]}
    assert stored["columns"]["hour"] == DERIVED["hour"]
    again = DatasetMetadata.model_validate_json(metadata.model_dump_json())
    assert again == metadata and again.digest == metadata.digest


def test_values_match_python_datetime() -> None:
    """Every part as Python computes it from the same instants (ISO calendar, Monday 1)."""
    instants = [datetime(2026, 1, 1) + timedelta(hours=7 * i, minutes=13 * i) for i in range(400)]
    frame = pl.DataFrame({"seen_at": instants}, schema={"seen_at": pl.Datetime("us")})
    metadata = _metadata()
    for name in ("hour", "weekday", "date", "week"):
        computed = frame.select(derived_expression(metadata.columns[name])).to_series().to_list()
        expected = {
            "hour": [t.hour for t in instants],
            "weekday": [t.isoweekday() for t in instants],
            "date": [t.date() for t in instants],
            "week": [f"{t.isocalendar()[0]:04d}-W{t.isocalendar()[1]:02d}" for t in instants],
        }[name]
        assert computed == expected, name


def test_time_zone_reads_utc_in_local_time() -> None:
    spec = _metadata(
        local_hour={
            "type": "derived",
            "from": "seen_at",
            "part": "hour",
            "time_zone": "Europe/Amsterdam",
        }
    ).columns["local_hour"]
    frame = pl.DataFrame(
        {"seen_at": [datetime(2026, 1, 15, 12), datetime(2026, 7, 15, 12)]},
        schema={"seen_at": pl.Datetime("us")},
    )
    assert frame.select(derived_expression(spec)).to_series().to_list() == [13, 14]


def test_group_by_a_derived_hour_matches_the_exact_counts() -> None:
    events = make_events(devices=400).drop("hour")
    metadata = _metadata()
    frame = with_derived(events.lazy(), metadata)
    assert frame.collect_schema() == frame_schema(metadata)
    query = QueryRequest.model_validate(
        {
            "dataset": "mobility_events",
            "statistic": "count",
            "group_by": ["hour"],
            "where": [{"column": "weekday", "op": "in", "value": [1, 2, 3, 4, 5]}],
            "max_partitions_contributed": 24,  # every hour: nothing is dropped
            "max_contributions_per_partition": 30,  # a device has at most 30 rows
            "privacy": {"epsilon": 100_000},  # sensitivity 720: noise scale < 0.01
        }
    )
    result = execute(plan_query(query, metadata, "pure"), frame)
    exact = dict(
        events.filter(pl.col("seen_at").dt.weekday() <= 5)
        .group_by(pl.col("seen_at").dt.hour().cast(pl.Int64).alias("hour"))
        .len()
        .iter_rows()
    )
    assert [row[0] for row in result.rows] == list(range(24))
    # P(|discrete Laplace at scale < 0.01| ≥ 1) < 2·e^-100: the released counts are exact
    assert dict(result.rows) == {hour: float(exact.get(hour, 0)) for hour in range(24)}


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ({"type": "derived", "from": "seen_at"}, "needs 'part'"),
        ({"type": "derived", "part": "hour"}, "needs 'from'"),
        ({"type": "derived", "from": "seen_at", "part": "date"}, "needs 'range'"),
        (
            {
                "type": "derived",
                "from": "seen_at",
                "part": "hour",
                "range": ["2026-03-01", "2026-03-02"],
            },
            "takes no 'range'",
        ),
        (
            {
                "type": "derived",
                "from": "seen_at",
                "part": "month",
                "range": ["2026-03-02", "2026-03-01"],
            },
            "first <= last",
        ),
        ({"type": "derived", "from": "seen_at", "part": "hour", "keys": [1]}, "implied"),
        ({"type": "derived", "from": "day", "part": "hour"}, "needs a datetime"),
        ({"type": "derived", "from": "operator", "part": "weekday"}, "date or datetime"),
        ({"type": "derived", "from": "nowhere", "part": "weekday"}, "declared date or datetime"),
        (
            {"type": "derived", "from": "seen_at", "part": "hour", "time_zone": "Mars/Olympus"},
            "time zone",
        ),
        ({"type": "categorical", "part": "hour"}, "only used by derived"),
    ],
)
def test_refused_derived_declarations(column: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _metadata(bad=column)


def _hierarchy(mapping: dict[str, str]) -> dict[str, Any]:
    return {"neighbourhood": {"parent": "municipality", "map": mapping}}


def test_hierarchy_checks_the_map() -> None:
    municipalities = list(make_metadata().columns["municipality"].keys or [])
    neighbourhoods = [f"{m}-{i}" for m in municipalities[:3] for i in range(2)]
    columns = {"neighbourhood": {"type": "categorical", "keys": neighbourhoods}}
    good = {nb: nb.split("-")[0] for nb in neighbourhoods}
    metadata = _metadata(**columns)
    metadata = make_metadata(
        columns=metadata.model_dump(mode="json")["columns"], hierarchy=_hierarchy(good)
    )
    assert metadata.ancestors("neighbourhood") == ["municipality"]
    assert metadata.rollup_map("neighbourhood", "municipality") == good
    cases = [
        ({k: v for k, v in list(good.items())[1:]}, "lacks 1 key"),
        (good | {"elsewhere": municipalities[0]}, "not keys of 'neighbourhood'"),
        (good | {neighbourhoods[0]: "GM9999x"}, "not keys of 'municipality'"),
    ]
    for mapping, message in cases:
        with pytest.raises(ValidationError, match=message):
            make_metadata(
                columns=metadata.model_dump(mode="json")["columns"], hierarchy=_hierarchy(mapping)
            )
    with pytest.raises(ValidationError, match="categorical column with public keys"):
        make_metadata(hierarchy={"operator": {"parent": "municipality", "map": {"x": "y"}}})
    with pytest.raises(ValidationError, match="cycle"):
        both = {m: m for m in municipalities}
        make_metadata(
            columns=metadata.model_dump(mode="json")["columns"]
            | {"region": {"type": "categorical", "keys": municipalities}},
            hierarchy={
                "municipality": {"parent": "region", "map": both},
                "region": {"parent": "municipality", "map": both},
            },
        )
