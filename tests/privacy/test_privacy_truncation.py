"""Our per-unit contribution bounding: properties (Hypothesis) and the keep="first" bias."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy.truncation import truncate_contributions

Row = tuple[str, str, int]

rows_strategy = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2", "u3", "u4"]),
        st.sampled_from(["G0001", "G0500", "G9998", "G9999"]),
        st.integers(0, 3),
    ),
    max_size=60,
)
other_unit_rows = st.lists(
    st.tuples(
        st.just("v"), st.sampled_from(["G0001", "G0500", "G9998", "G9999"]), st.integers(0, 3)
    ),
    min_size=1,
    max_size=15,
)


def frame(rows: list[Row]) -> pl.LazyFrame:
    return pl.LazyFrame(
        rows, schema={"unit": pl.String, "group": pl.String, "value": pl.Int64}, orient="row"
    )


def truncate(rows: list[Row], k: int, c: int, *, with_value: bool = True) -> list[Any]:
    data = frame(rows) if with_value else frame(rows).select("unit", "group")
    out = truncate_contributions(
        data, unit="unit", by=["group"], max_groups=k, max_rows_per_group=c
    ).collect()
    return list(out.iter_rows())


@settings(max_examples=150, deadline=None)
@given(rows=rows_strategy, k=st.integers(1, 4), c=st.integers(1, 3), with_value=st.booleans())
def test_bounds_hold_and_the_largest_groups_are_kept(
    rows: list[Row], k: int, c: int, with_value: bool
) -> None:
    kept = truncate(rows, k, c, with_value=with_value)
    original = Counter((u, g) for u, g, _ in rows)
    kept_counts = Counter((row[0], row[1]) for row in kept)
    for unit in {u for u, _, _ in rows}:
        groups = {g: n for (u, g), n in original.items() if u == unit}
        kept_groups = {g: n for (u, g), n in kept_counts.items() if u == unit}
        # at most k groups, exactly min(k, groups of the unit)
        assert len(kept_groups) == min(k, len(groups))
        # at most c rows per group, exactly min(c, rows the unit has there)
        for group, n in kept_groups.items():
            assert n == min(c, groups[group])
        # the kept groups are the unit's most frequent ones
        dropped = [n for g, n in groups.items() if g not in kept_groups]
        if dropped:
            assert min(groups[g] for g in kept_groups) >= max(dropped)
    # kept rows are a sub-multiset of the input rows
    source = Counter(rows) if with_value else Counter((u, g) for u, g, _ in rows)
    assert not Counter(kept) - source


@settings(max_examples=150, deadline=None)
@given(
    rows=rows_strategy,
    extra=other_unit_rows,
    k=st.integers(1, 3),
    c=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_truncation_is_a_per_unit_function(
    rows: list[Row], extra: list[Row], k: int, c: int, seed: int
) -> None:
    """Adding one unit's rows (anywhere in the file) changes only that unit's kept rows.

    This is the property the privacy argument rests on: neighbouring datasets
    stay neighbours after truncation, within the declared bounds.
    """
    combined = rows + extra
    order = np.random.default_rng(seed).permutation(len(combined))
    shuffled = [combined[i] for i in order]
    before = Counter(truncate(rows, k, c))
    after = Counter(truncate(shuffled, k, c))
    added = after - before
    assert not before - after  # nobody else lost a row
    assert all(row[0] == "v" for row in added)  # only the new unit's rows appear
    per_group = Counter(row[1] for row in added.elements())
    assert len(per_group) <= k and all(n <= c for n in per_group.values())


@settings(max_examples=50, deadline=None)
@given(rows=rows_strategy, c=st.integers(1, 3))
def test_without_grouping_each_unit_keeps_c_rows(rows: list[Row], c: int) -> None:
    out = truncate_contributions(
        frame(rows), unit="unit", by=[], max_groups=1, max_rows_per_group=c
    ).collect()
    per_unit = Counter(out["unit"].to_list())
    original = Counter(u for u, _, _ in rows)
    assert per_unit == Counter({u: min(c, n) for u, n in original.items()})


def test_truncation_is_deterministic_and_row_order_free() -> None:
    rng = np.random.default_rng(3)
    rows: list[Row] = [
        (f"u{rng.integers(50)}", f"G{rng.integers(20):04d}", int(rng.integers(9)))
        for _ in range(2_000)
    ]
    reference = Counter(truncate(rows, 2, 2))
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(len(rows))
        assert Counter(truncate([rows[i] for i in order], 2, 2)) == reference


def test_no_bias_against_high_coded_groups() -> None:
    """OpenDP 0.16's keep="first" ranks groups by key value and drops high codes.

    Every device visits a low-coded and a high-coded municipality equally
    often (plus two others): with k = 2 the choice among these tied groups must
    not depend on the code, so both keep about the same number of visitors.
    """
    rng = np.random.default_rng(11)
    rows: list[tuple[str, str]] = []
    for device in range(4_000):
        others = rng.choice([f"GM{i:04d}" for i in range(100, 200)], size=2, replace=False)
        for municipality in ["GM0001", "GM9999", *others]:
            rows += [(f"d{device}", str(municipality))] * 2
    data = pl.LazyFrame(rows, schema={"unit": pl.String, "group": pl.String}, orient="row")
    kept = truncate_contributions(
        data, unit="unit", by=["group"], max_groups=2, max_rows_per_group=1
    ).collect()
    visitors = dict(kept.group_by("group").agg(pl.len()).iter_rows())
    low, high = visitors["GM0001"], visitors["GM9999"]
    # each is kept by ≈ 4000 · 2/4 = 2000 devices; a key-value rule would give 4000 vs 0
    assert abs(low - 2000) < 200 and abs(high - 2000) < 200
    assert abs(low - high) < 200


def test_a_large_high_coded_group_keeps_its_visitors() -> None:
    """A device's most visited municipality is kept, whatever its code."""
    rng = np.random.default_rng(12)
    rows: list[tuple[str, str]] = []
    for device in range(3_000):
        rows += [(f"d{device}", "GM9999")] * int(rng.integers(3, 6))  # the big one, high code
        for municipality in rng.choice([f"GM{i:04d}" for i in range(10)], size=3, replace=False):
            rows += [(f"d{device}", str(municipality))]
    data = pl.LazyFrame(rows, schema={"unit": pl.String, "group": pl.String}, orient="row")
    kept = truncate_contributions(
        data, unit="unit", by=["group"], max_groups=1, max_rows_per_group=1
    ).collect()
    visitors = dict(kept.group_by("group").agg(pl.len()).iter_rows())
    assert visitors == {"GM9999": 3_000}
