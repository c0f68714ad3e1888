"""Filters applied as a mask give exactly the truncated frame of dropping rows first.

The reference is a frozen copy of the truncation as it was before the mask
(filter, then count/rank/join/sort only the matching rows); the released path
(:func:`privacy.execute.prepare_frame`, which carries the filters as a mask over all
rows so that its work does not depend on how many rows match) must give the same
multiset of rows, hence the same exact (pre-noise) aggregates, on generated data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy import DatasetMetadata, QueryRequest, plan_query
from privacy.execute import filtered_frame, masked_frame, prepare_frame
from privacy.truncation import truncate_contributions, unit_group_counts, unit_profile
from tests.factories import MOBILITY_DAYS as DAYS
from tests.factories import MOBILITY_MUNICIPALITIES as MUNICIPALITIES

_GROUP_SEED = 0x5275_6973
_ROW_SEED = 0x6E6F_6973
_ROWS = "__ruis_rows__"


def _position(*partition: str) -> pl.Expr:
    return pl.int_range(pl.len(), dtype=pl.UInt32).over(list(partition))


def _old_top_groups(counts: pl.LazyFrame, group_key: list[str], unit: str, k: int) -> pl.LazyFrame:
    by = group_key[1:]
    return (
        counts.with_columns(pl.struct(group_key).hash(_GROUP_SEED).alias("h"))
        .sort([_ROWS, "h", *by], descending=[True, *([False] * (len(by) + 1))], maintain_order=True)
        .filter(_position(unit) < k)
        .select([*group_key, _ROWS])
    )


def old_truncate(
    frame: pl.LazyFrame, *, unit: str, by: Sequence[str], k: int, c: int
) -> pl.LazyFrame:
    """The truncation before the mask (commit e88c39b), on an already filtered frame."""
    columns = frame.collect_schema().names()
    group_key = [unit, *by]
    others = [n for n in columns if n not in group_key]
    counts = frame.group_by(group_key).agg(pl.len().alias(_ROWS))
    if not others:
        if by:
            counts = _old_top_groups(counts, group_key, unit, k)
        if c == 1:
            return counts.select(group_key)
        copies = pl.int_ranges(0, pl.min_horizontal(pl.col(_ROWS), c), dtype=pl.UInt32)
        return counts.with_columns(copies.alias(_ROWS)).explode(_ROWS).select(group_key)
    if by:
        frame = frame.join(
            _old_top_groups(counts, group_key, unit, k).select(group_key),
            on=group_key,
            how="semi",
            nulls_equal=True,
        )
    frame = (
        frame.with_columns(pl.struct(columns).hash(_ROW_SEED).alias("rh"))
        .sort(["rh", *others], maintain_order=True)
        .drop("rh")
    )
    return frame.filter(_position(*group_key) < c)


def rows_of(frame: pl.LazyFrame) -> Counter[tuple[Any, ...]]:
    return Counter(frame.collect().iter_rows())


def query(**fields: Any) -> QueryRequest:
    body: dict[str, Any] = {
        "dataset": "mobility_events",
        "statistic": "count",
        "privacy": {"epsilon": 1},
    }
    body.update(fields)
    return QueryRequest.model_validate(body)


def messy(events: pl.DataFrame, seed: int = 3) -> pl.DataFrame:
    """The test events plus rows the mask must drop: null units, unknown keys, null/NaN values."""
    rng = np.random.default_rng(seed)
    extra = events.sample(300, seed=seed)
    choice = rng.integers(0, 4, size=extra.height)
    return pl.concat(
        [
            events,
            extra.with_columns(
                pl.when(pl.Series(choice == 0))
                .then(None)
                .otherwise(pl.col("device_id"))
                .alias("device_id"),
                pl.when(pl.Series(choice == 1))
                .then(pl.lit("GM_NOT_PUBLIC"))
                .otherwise(pl.col("municipality"))
                .alias("municipality"),
                pl.when(pl.Series(choice == 2))
                .then(float("nan"))
                .when(pl.Series(choice == 3))
                .then(None)
                .otherwise(pl.col("dwell_minutes"))
                .alias("dwell_minutes"),
            ),
        ]
    )


WHERES: list[list[dict[str, Any]]] = [
    [],
    [{"column": "day", "op": "between", "value": [DAYS[0].isoformat(), DAYS[-1].isoformat()]}],
    [{"column": "day", "op": "between", "value": [DAYS[1].isoformat(), DAYS[3].isoformat()]}],
    [{"column": "municipality", "op": "eq", "value": MUNICIPALITIES[5]}],
    # these two match no row (NaN values satisfy no comparison), and no key is involved
    [{"column": "dwell_minutes", "op": "lt", "value": -1}],
    [{"column": "dwell_minutes", "op": "gt", "value": 1000}],
    [
        {"column": "hour", "op": "ge", "value": 12},
        {"column": "dwell_minutes", "op": "lt", "value": 60},
    ],
]
SHAPES: list[dict[str, Any]] = [
    {"statistic": "count"},
    {"statistic": "unit_count", "group_by": ["municipality"]},
    {
        "statistic": "count",
        "group_by": ["municipality", "day"],
        "max_contributions_per_partition": 2,
    },
    {"statistic": "sum", "column": "dwell_minutes", "group_by": ["municipality"]},
    {"statistic": "mean", "column": "dwell_minutes", "max_contributions_per_partition": 3},
    {
        "statistic": "quantile",
        "column": "hour",
        "q": 0.5,
        "group_by": ["day"],
        "max_partitions_contributed": 2,
        "max_contributions_per_partition": 2,
    },
]


@pytest.mark.parametrize(
    "shape", SHAPES, ids=lambda s: "-".join([s["statistic"], *s.get("group_by", [])])
)
@pytest.mark.parametrize(
    "where", WHERES, ids=lambda w: "+".join(f"{f['column']}-{f['op']}" for f in w) or "all"
)
def test_masked_truncation_equals_filter_then_truncate(
    metadata: DatasetMetadata,
    events: pl.DataFrame,
    shape: dict[str, Any],
    where: list[dict[str, Any]],
) -> None:
    data = messy(events)
    plan = plan_query(query(where=where, **shape), metadata, "pure")
    assert plan.query is not None
    q = plan.query
    old = old_truncate(
        filtered_frame(q, metadata, data.lazy()),
        unit="device_id",
        by=q.group_by,
        k=q.max_partitions_contributed,
        c=q.max_contributions_per_partition,
    )
    new = prepare_frame(plan, data.lazy())
    assert new.collect_schema().names() == old.collect_schema().names()
    expected = rows_of(old)
    assert rows_of(new) == expected
    if where and where[0].get("value") in (-1, 1000):
        assert not expected
    # and therefore the exact aggregates the noise is added to are the same
    by = list(q.group_by)
    aggregate = pl.len() if q.statistic in ("count", "unit_count") else pl.col("ruis.value").sum()
    if len(by) == 1:
        old_table = dict(old.group_by(by).agg(aggregate.alias("v")).collect().iter_rows())
        new_table = dict(new.group_by(by).agg(aggregate.alias("v")).collect().iter_rows())
        assert old_table.keys() == new_table.keys()
        for key, value in old_table.items():  # float sums: the same rows, in another order
            assert new_table[key] == pytest.approx(value, rel=1e-12, abs=1e-9)


def test_masked_frame_keeps_every_row(metadata: DatasetMetadata, events: pl.DataFrame) -> None:
    """The work's input has as many rows as the file whatever the filter matches."""
    data = messy(events)
    heights = set()
    for where in WHERES:
        plan = plan_query(
            query(where=where, statistic="sum", column="dwell_minutes"), metadata, "pure"
        )
        assert plan.query is not None
        heights.add(masked_frame(plan.query, metadata, data.lazy()).collect().height)
    assert heights == {data.height}


def test_masked_counts_cover_every_group_and_profile_unchanged(events: pl.DataFrame) -> None:
    frame = events.lazy().select("device_id", "municipality", (pl.col("hour") >= 20).alias("match"))
    counts = unit_group_counts(frame, unit="device_id", by=["municipality"], mask="match")
    everything = unit_group_counts(frame, unit="device_id", by=["municipality"])
    assert counts.collect().height == everything.collect().height
    filtered = frame.filter("match").drop("match")
    plain = unit_group_counts(filtered, unit="device_id", by=["municipality"])
    masked = counts.filter(pl.col(_ROWS) > 0)
    assert rows_of(masked) == rows_of(plain)
    for k in (None, 2):
        args: dict[str, Any] = {
            "unit": "device_id",
            "by": ["municipality"],
            "max_groups": k,
            "group_limit": 4,
            "row_limit": 3,
            "groups_column": "g",
            "rows_column": "r",
        }
        assert rows_of(unit_profile(masked, **args)) == rows_of(unit_profile(plain, **args))


Row = tuple[str, str, int, bool]


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["u1", "u2", "u3"]),
            st.sampled_from(["G1", "G2", "G3", "G4"]),
            st.integers(0, 3),
            st.booleans(),
        ),
        max_size=50,
    ),
    k=st.integers(1, 4),
    c=st.integers(1, 3),
    with_value=st.booleans(),
    grouped=st.booleans(),
)
def test_mask_property(rows: list[Row], k: int, c: int, with_value: bool, grouped: bool) -> None:
    frame = pl.LazyFrame(
        rows,
        schema={"unit": pl.String, "group": pl.String, "value": pl.Int64, "m": pl.Boolean},
        orient="row",
    )
    if not with_value:
        frame = frame.drop("value")
    by = ["group"] if grouped else []
    if not grouped:
        frame = frame.drop("group")
    new = truncate_contributions(
        frame, unit="unit", by=by, max_groups=k, max_rows_per_group=c, mask="m"
    )
    old = old_truncate(frame.filter("m").drop("m"), unit="unit", by=by, k=k, c=c)
    assert rows_of(new) == rows_of(old)
