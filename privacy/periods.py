"""Budgets per period: which period of a budget a query falls in, from public facts only.

A budget may carry ``"period": {"column": "day", "every": "month"}``: each calendar
month (ISO week, day) of the values of ``column`` has its own budget. A query is
charged against one period, so its ``where`` must confine ``column`` to one period;
:func:`query_period` decides which from the query's resolved filters and the public
metadata alone (never from the data), or says why it cannot (a 422).

What this protects: the answers of queries confined to a period are functions of the
rows whose ``column`` lies in that period (the filters are applied before contribution
bounding and before any other step), so each period's rows of a unit are protected by
that period's budget. A unit with rows in several periods is protected by the SUM of
those periods' spending: the ``cumulative`` figure (README, "How the budget is kept").

Period boundaries: months and days are calendar ones; weeks are ISO weeks (Monday to
Sunday). A ``datetime`` column is cut at midnight of its stored (naive, UTC) times; a
derived ``date`` column at midnight of its own time zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from privacy.errors import InvalidQuery
from privacy.metadata import NAME_PATTERN, DatasetMetadata, day_key
from privacy.query import ResolvedFilter

Every = Literal["month", "week", "day"]
_ADJECTIVE = {"month": "monthly", "week": "weekly", "day": "daily"}
_PARTS = {"month": "month", "week": "iso_week", "day": "date"}
"""The derived-column part whose keys name the periods of ``every``."""


class PeriodSpec(BaseModel):
    """``{"column": "day", "every": "month"}``: one budget per month of ``day``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    column: str = Field(
        pattern=NAME_PATTERN,
        description="a date or datetime column (or a derived date column) of the dataset",
    )
    every: Every = Field(description="month (calendar), week (ISO, Monday first) or day")


@dataclass(frozen=True)
class Period:
    """One period of a budget: ``start`` to ``end`` (dates, both included)."""

    every: Every
    start: date

    @property
    def end(self) -> date:
        """The last day of the period."""
        if self.every == "day":
            return self.start
        if self.every == "week":
            return self.start + timedelta(days=6)
        following = (
            date(self.start.year + 1, 1, 1)
            if self.start.month == 12
            else date(self.start.year, self.start.month + 1, 1)
        )
        return following - timedelta(days=1)

    @property
    def label(self) -> str:
        """``2026-03`` (month), ``2026-W10`` (ISO week), ``2026-03-05`` (day): the keys a
        derived column of that part gives (:func:`privacy.metadata.day_key`)."""
        return day_key(_PARTS[self.every], self.start)

    def document(self) -> dict[str, str]:
        """As responses and the ledger show it."""
        return {
            "period": self.label,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
        }

    @classmethod
    def starting(cls, every: Every, start: date | str) -> Period:
        """The period of ``every`` that starts on ``start`` (as stored)."""
        day = date.fromisoformat(start) if isinstance(start, str) else start
        return cls(every=every, start=day)


def period_of(day: date, every: Every) -> Period:
    """The period of ``every`` that contains ``day``."""
    if every == "day":
        return Period(every, day)
    if every == "week":
        return Period(every, day - timedelta(days=day.weekday()))
    return Period(every, day.replace(day=1))


def check_period_column(spec: PeriodSpec, metadata: DatasetMetadata) -> None:
    """Refuse a period on a column whose values cannot be placed in periods (ValueError).

    The column must be declared ``date`` or ``datetime``, or be a derived ``date``."""
    column = metadata.columns.get(spec.column)
    if column is None:
        raise ValueError(f"period column {spec.column!r} is not a declared column")
    if column.value_type not in ("date", "datetime"):
        raise ValueError(
            f"period column {spec.column!r} is {column.type}"
            + (f" ({column.part})" if column.part else "")
            + ": a period needs a date or datetime column, or a derived date column"
        )


def _lower(flt: ResolvedFilter, is_date: bool) -> date | None:
    """The first day ``flt`` lets through (None: no lower limit)."""
    if flt.op in ("eq", "ge"):
        return _day(flt.typed)
    if flt.op == "between":
        return _day(flt.typed[0])
    if flt.op == "in":
        return min(_day(v) for v in flt.typed)
    if flt.op == "gt":
        # a date after d starts the next day; a time after t may still be on t's day
        return _day(flt.typed) + timedelta(days=1) if is_date else _day(flt.typed)
    return None


def _upper(flt: ResolvedFilter, is_date: bool) -> date | None:
    """The last day ``flt`` lets through (None: no upper limit)."""
    if flt.op in ("eq", "le"):
        return _day(flt.typed)
    if flt.op == "between":
        return _day(flt.typed[1])
    if flt.op == "in":
        return max(_day(v) for v in flt.typed)
    if flt.op == "lt":
        if is_date:
            return _day(flt.typed) - timedelta(days=1)
        # every time before t is at most one microsecond before it (period boundaries,
        # midnights, are whole microseconds): its day is that of t − 1 µs
        return _day(flt.typed - timedelta(microseconds=1))
    return None


def _day(value: Any) -> date:
    return value.date() if isinstance(value, datetime) else value


def query_period(
    filters: tuple[ResolvedFilter, ...], spec: PeriodSpec, metadata: DatasetMetadata
) -> Period:
    """The one period of ``spec`` that the query's ``where`` confines ``spec.column`` to.

    Decided from the filters and the public metadata only; raises :class:`InvalidQuery`
    (nothing is spent) when the filters leave the column open on either side, span
    more than one period or leave no value at all."""
    column = metadata.columns.get(spec.column)
    if column is None or column.value_type not in ("date", "datetime"):
        raise InvalidQuery(
            f"the budget's period column {spec.column!r} is not a date column of the dataset"
        )
    is_date = column.value_type == "date"
    example = _example(spec.every)
    need = (
        f"your budget on this dataset is {_ADJECTIVE[spec.every]} on {spec.column!r}: a "
        f"query must filter {spec.column!r} to within one {spec.every} ({example})"
    )
    on_column = [f for f in filters if f.column == spec.column]
    if not on_column:
        raise InvalidQuery(f"{need}; this query has no filter on {spec.column!r}")
    lows = [d for d in (_lower(f, is_date) for f in on_column) if d is not None]
    highs = [d for d in (_upper(f, is_date) for f in on_column) if d is not None]
    if not lows or not highs:
        side = "lower" if not lows else "upper"
        raise InvalidQuery(f"{need}; its filters on {spec.column!r} set no {side} limit")
    first, last = max(lows), min(highs)
    if first > last:
        raise InvalidQuery(f"{need}; its filters on {spec.column!r} leave no value at all")
    period = period_of(first, spec.every)
    if period_of(last, spec.every) != period:
        raise InvalidQuery(
            f"{need}; its filters on {spec.column!r} span {period.label} to "
            f"{period_of(last, spec.every).label}: ask one query per {spec.every}"
        )
    return period


def _example(every: Every) -> str:
    if every == "month":
        return "e.g. 'between' 2026-03-01 and 2026-03-31"
    if every == "week":
        return "e.g. 'between' a Monday and the Sunday after it"
    return "e.g. 'eq' one date"
