"""The period a query falls in (privacy.periods): decided from its filters and the public
metadata only; a query not confined to one period is an InvalidQuery (a 422)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy import QueryRequest
from privacy.errors import InvalidQuery
from privacy.metadata import DatasetMetadata
from privacy.periods import Period, PeriodSpec, check_period_column, period_of, query_period
from privacy.query import resolve_query
from tests.factories import make_metadata

MONTH_KEYS = [f"2026-03-{d:02d}" for d in range(1, 32)] + [f"2026-04-{d:02d}" for d in range(1, 31)]


def _metadata() -> DatasetMetadata:
    metadata = make_metadata()
    columns = metadata.model_dump(mode="json", by_alias=True)["columns"]
    columns["day"] = {"type": "date", "keys": MONTH_KEYS}
    columns["local_day"] = {
        "type": "derived",
        "from": "seen_at",
        "part": "date",
        "range": ["2026-03-01", "2026-04-30"],
    }
    return make_metadata(columns=columns)


def _period(where: list[dict[str, Any]], column: str = "day", every: str = "month") -> Period:
    metadata = _metadata()
    query = QueryRequest.model_validate(
        {
            "dataset": "mobility_events",
            "statistic": "count",
            "where": where,
            "privacy": {"epsilon": 1},
        }
    )
    spec = PeriodSpec.model_validate({"column": column, "every": every})
    return query_period(resolve_query(query, metadata).filters, spec, metadata)


def _between(low: str, high: str, column: str = "day") -> dict[str, Any]:
    return {"column": column, "op": "between", "value": [low, high]}


def test_a_month_between_its_first_and_last_day() -> None:
    period = _period([_between("2026-03-01", "2026-03-31")])
    assert period == Period("month", date(2026, 3, 1))
    assert period.document() == {"period": "2026-03", "start": "2026-03-01", "end": "2026-03-31"}


@pytest.mark.parametrize(
    "where",
    [
        [{"column": "day", "op": "eq", "value": "2026-04-05"}],
        [{"column": "day", "op": "in", "value": ["2026-04-30", "2026-04-01"]}],
        [
            {"column": "day", "op": "ge", "value": "2026-04-01"},
            {"column": "day", "op": "lt", "value": "2026-05-01"},
        ],
        [
            {"column": "day", "op": "gt", "value": "2026-03-31"},
            {"column": "day", "op": "le", "value": "2026-04-30"},
        ],
        # two filters whose intersection is within April, each alone wider
        [_between("2026-03-20", "2026-04-20"), _between("2026-04-01", "2026-04-30")],
    ],
)
def test_filters_confining_the_column_to_april(where: list[dict[str, Any]]) -> None:
    assert _period(where).label == "2026-04"


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ([], "no filter on 'day'"),
        ([{"column": "hour", "op": "eq", "value": 3}], "no filter on 'day'"),
        ([_between("2026-03-31", "2026-04-01")], "span 2026-03 to 2026-04"),
        ([{"column": "day", "op": "in", "value": ["2026-03-05", "2026-04-05"]}], "span"),
        ([{"column": "day", "op": "ge", "value": "2026-03-01"}], "no upper limit"),
        ([{"column": "day", "op": "lt", "value": "2026-04-01"}], "no lower limit"),
        (
            [
                {"column": "day", "op": "eq", "value": "2026-03-05"},
                {"column": "day", "op": "eq", "value": "2026-03-06"},
            ],
            "no value at all",
        ),
    ],
)
def test_queries_not_confined_to_one_month_are_refused(
    where: list[dict[str, Any]], says: str
) -> None:
    with pytest.raises(InvalidQuery, match=says) as refused:
        _period(where)
    assert "monthly on 'day'" in refused.value.detail


def test_weeks_are_iso_weeks_and_days_are_days() -> None:
    assert _period([_between("2026-03-02", "2026-03-08")], every="week").label == "2026-W10"
    with pytest.raises(InvalidQuery, match="span 2026-W10 to 2026-W11"):
        _period([_between("2026-03-02", "2026-03-09")], every="week")
    assert _period([{"column": "day", "op": "eq", "value": "2026-03-09"}], every="day").label == (
        "2026-03-09"
    )
    with pytest.raises(InvalidQuery, match="span"):
        _period([_between("2026-03-08", "2026-03-09")], every="day")
    assert period_of(date(2026, 12, 31), "month").end == date(2026, 12, 31)


def test_datetime_columns_cut_at_midnight() -> None:
    march = [
        {"column": "seen_at", "op": "ge", "value": "2026-03-01T00:00:00"},
        {"column": "seen_at", "op": "lt", "value": "2026-04-01T00:00:00"},
    ]
    assert _period(march, column="seen_at").label == "2026-03"
    one_more_moment = [march[0], {"column": "seen_at", "op": "le", "value": "2026-04-01T00:00:00"}]
    with pytest.raises(InvalidQuery, match="span"):
        _period(one_more_moment, column="seen_at")


def test_a_derived_date_column_can_carry_the_period() -> None:
    where = [_between("2026-04-01", "2026-04-30", column="local_day")]
    assert _period(where, column="local_day").label == "2026-04"


@pytest.mark.parametrize("column", ["municipality", "hour", "nope"])
def test_a_period_needs_a_date_column(column: str) -> None:
    with pytest.raises(ValueError, match="period column"):
        check_period_column(PeriodSpec(column=column, every="month"), _metadata())
    check_period_column(PeriodSpec(column="seen_at", every="day"), _metadata())


@settings(max_examples=300, deadline=None)
@given(
    first=st.integers(0, 60),
    length=st.integers(0, 60),
    every=st.sampled_from(["month", "week", "day"]),
)
def test_a_range_is_one_period_exactly_when_all_its_days_are(
    first: int, length: int, every: str
) -> None:
    low = date(2026, 3, 1) + timedelta(days=first)
    high = min(low + timedelta(days=length), date(2026, 4, 30))
    days = [low + timedelta(days=i) for i in range((high - low).days + 1)]
    periods = {period_of(d, every).start for d in days}  # type: ignore[arg-type]
    where = [_between(low.isoformat(), high.isoformat())]
    if len(periods) == 1:
        period = _period(where, every=every)
        assert period.start == periods.pop() and period.start <= low and high <= period.end
    else:
        with pytest.raises(InvalidQuery, match="span"):
            _period(where, every=every)
