"""Contribution bounds per grouping column (``contribution_bounds_per``): the truncation's
properties against a reference, OpenDP's noise scale against the hand derivation, the
automatic choice per day, and the accuracy gain on municipality × day data."""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from datetime import timedelta
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy import DatasetMetadata, InvalidQuery, QueryRequest, execute, plan_query
from privacy.execute import MATCH_COLUMN, masked_frame
from privacy.query import resolve_query
from privacy.truncation import (
    _GROUP_SEED,
    _ROW_SEED,
    truncate_contributions,
    unit_group_counts,
    unit_profile,
)
from tests.factories import MOBILITY_DAYS, MOBILITY_MUNICIPALITIES, make_events
from tests.support.plans import statistic_plan

Row = tuple[str, str, int, int]
"""(unit, group, day, value)"""
SCHEMA = {"unit": pl.String, "group": pl.String, "day": pl.Int64, "value": pl.Int64}
UNITS = ["u1", "u2", "u3"]
GROUPS = ["G1", "G2", "G3", "G4"]
DAYS = [0, 1, 2]

row_strategy = st.tuples(
    st.sampled_from(UNITS), st.sampled_from(GROUPS), st.sampled_from(DAYS), st.integers(0, 2)
)
rows_strategy = st.lists(row_strategy, max_size=60)
other_unit_rows = st.lists(
    st.tuples(st.just("v"), st.sampled_from(GROUPS), st.sampled_from(DAYS), st.integers(0, 2)),
    min_size=1,
    max_size=20,
)


def frame(rows: list[Row], mask: list[bool] | None = None) -> pl.LazyFrame:
    data = pl.LazyFrame(rows, schema=SCHEMA, orient="row")
    if mask is not None:
        data = data.with_columns(pl.Series("match", mask, dtype=pl.Boolean))
    return data


def truncate(
    rows: list[Row],
    k: int,
    c: int,
    *,
    with_value: bool = True,
    mask: list[bool] | None = None,
) -> Counter[tuple[Any, ...]]:
    data = frame(rows, mask)
    if not with_value:
        data = data.drop("value")
    out = truncate_contributions(
        data,
        unit="unit",
        by=["group", "day"],
        max_groups=k,
        max_rows_per_group=c,
        mask="match" if mask is not None else None,
        per=["day"],
    ).collect()
    return Counter(out.iter_rows())


def reference(
    rows: list[Row], k: int, c: int, *, with_value: bool = True
) -> Counter[tuple[Any, ...]]:
    """The truncation written out plainly: per (unit, day), the k groups with most rows
    (ties: the fixed (unit, group) hash, then the key), c rows per group (by row hash)."""
    if not rows:
        return Counter()
    data = frame(rows) if with_value else frame(rows).drop("value")
    columns = data.collect_schema().names()
    hashed = data.with_columns(
        pl.struct(["unit", "group", "day"]).hash(_GROUP_SEED).alias("gh"),
        pl.struct(columns).hash(_ROW_SEED).alias("rh"),
    ).collect()
    by_group: dict[tuple[Any, ...], list[tuple[int, tuple[Any, ...]]]] = defaultdict(list)
    group_hash: dict[tuple[Any, ...], int] = {}
    for record in hashed.iter_rows(named=True):
        key = (record["unit"], record["group"], record["day"])
        content = tuple(record[name] for name in columns)
        by_group[key].append((record["rh"], content))
        group_hash[key] = record["gh"]
    kept: Counter[tuple[Any, ...]] = Counter()
    per_day: dict[tuple[Any, ...], list[tuple[Any, ...]]] = defaultdict(list)
    for key in by_group:
        per_day[(key[0], key[2])].append(key)
    for groups in per_day.values():
        ranked = sorted(groups, key=lambda g: (-len(by_group[g]), group_hash[g], g[1], g[2]))
        for group in ranked[:k]:
            for _, content in sorted(by_group[group])[:c]:
                kept[content] += 1
    return kept


@settings(max_examples=150, deadline=None)
@given(
    rows=rows_strategy,
    k=st.integers(1, 3),
    c=st.integers(1, 3),
    with_value=st.booleans(),
    mask_seed=st.none() | st.integers(0, 2**32 - 1),
)
def test_truncation_per_day_equals_the_reference(
    rows: list[Row], k: int, c: int, with_value: bool, mask_seed: int | None
) -> None:
    if mask_seed is None:
        assert truncate(rows, k, c, with_value=with_value) == reference(
            rows, k, c, with_value=with_value
        )
        return
    # with a mask, exactly as if the non-matching rows had been dropped first
    rng = random.Random(mask_seed)
    mask = [rng.random() < 0.6 for _ in rows]
    matching = [row for row, keep in zip(rows, mask, strict=True) if keep]
    assert truncate(rows, k, c, with_value=with_value, mask=mask) == reference(
        matching, k, c, with_value=with_value
    )


@settings(max_examples=150, deadline=None)
@given(
    rows=rows_strategy,
    extra=other_unit_rows,
    k=st.integers(1, 3),
    c=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_truncation_per_day_is_a_per_unit_map_within_the_stated_bounds(
    rows: list[Row], extra: list[Row], k: int, c: int, seed: int
) -> None:
    """The privacy argument's premise: adding all rows of unit ``v`` (in any order) adds
    exactly T_v's rows, which lie under ≤ D days, ≤ k groups per day, ≤ c rows per group —
    so the neighbouring distance is within Bound(by=[group, day], per_group=c,
    num_groups=k·D) and Bound(by=[day], per_group=k·c, num_groups=D)."""
    before = truncate(rows, k, c)
    combined = rows + extra
    random.Random(seed).shuffle(combined)
    after = truncate(combined, k, c)
    added = after - before
    assert not before - after  # nobody else's rows changed
    assert added == truncate(extra, k, c)  # exactly T_v(D_v)
    assert all(row[0] == "v" for row in added)
    groups = Counter((row[1], row[2]) for row in added.elements())
    days = Counter(row[2] for row in added.elements())
    assert len(days) <= len(DAYS)
    assert all(n <= c for n in groups.values())
    for day, n in days.items():
        assert len([g for g in groups if g[1] == day]) <= k
        assert n <= k * c
    assert len(groups) <= k * len(DAYS)
    assert sum(added.values()) <= k * c * len(DAYS)


@settings(max_examples=60, deadline=None)
@given(rows=rows_strategy, k=st.integers(1, 3), c=st.integers(1, 3), seed=st.integers(0, 999))
def test_truncation_per_day_ignores_row_order(rows: list[Row], k: int, c: int, seed: int) -> None:
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    assert truncate(shuffled, k, c) == truncate(rows, k, c)


@settings(max_examples=100, deadline=None)
@given(rows=rows_strategy, k=st.integers(1, 3), c=st.integers(1, 3))
def test_a_global_k_times_days_keeps_at_least_as_many_rows_per_unit(
    rows: list[Row], k: int, c: int
) -> None:
    """Per day k and a global k·D give OpenDP the same l0 = k·D, l∞ = c (hence the same
    noise); the global truncation keeps each unit's k·D fullest groups, so per unit it never
    keeps fewer rows. (What ``contribution_bounds_per`` adds is the "per day" meaning and,
    with ``"auto"``, candidates of k per day; see the README.)"""
    per_day = truncate(rows, k, c)
    out = truncate_contributions(
        frame(rows),
        unit="unit",
        by=["group", "day"],
        max_groups=k * len(DAYS),
        max_rows_per_group=c,
    ).collect()
    global_rows = Counter(out["unit"].to_list())
    per_day_rows = Counter(row[0] for row in per_day.elements())
    assert all(global_rows[unit] >= n for unit, n in per_day_rows.items())


def test_without_per_the_truncation_is_unchanged() -> None:
    """``per=()`` is the global truncation (k groups over all days)."""
    rng = random.Random(3)
    rows = [
        (rng.choice(UNITS), rng.choice(GROUPS), rng.choice(DAYS), rng.randint(0, 2))
        for _ in range(200)
    ]
    out = truncate_contributions(
        frame(rows), unit="unit", by=["group", "day"], max_groups=2, max_rows_per_group=1
    ).collect()
    assert Counter(out["unit"].to_list()) == dict.fromkeys(UNITS, 2)


def test_per_must_be_some_but_not_all_grouping_columns() -> None:
    for per in (["unit"], ["group", "day"], ["day", "day"]):
        with pytest.raises(ValueError, match="must be some, not all"):
            truncate_contributions(
                frame([]),
                unit="unit",
                by=["group", "day"],
                max_groups=1,
                max_rows_per_group=1,
                per=per,
            )


def test_unit_profile_per_day_has_a_row_per_unit_and_day() -> None:
    rows: list[Row] = [
        ("u1", "G1", 0, 0),
        ("u1", "G2", 0, 0),
        ("u1", "G3", 0, 0),
        ("u1", "G1", 1, 0),
        ("u2", "G4", 2, 0),
        ("u2", "G4", 2, 1),
    ]
    counts = unit_group_counts(frame(rows).drop("value"), unit="unit", by=["group", "day"])
    profile = unit_profile(
        counts,
        unit="unit",
        by=["group", "day"],
        max_groups=None,
        group_limit=10,
        row_limit=10,
        groups_column="g",
        rows_column="n",
        per=["day"],
    ).collect()
    # (u1, day 0): 3 groups of 1 row; (u1, day 1): 1 group of 1; (u2, day 2): 1 group of 2
    assert Counter(profile.iter_rows()) == Counter({(3, 1): 1, (1, 1): 1, (1, 2): 1})


# --- OpenDP's noise scale against the hand derivation ----------------------------------------


def grouped(metadata_: DatasetMetadata, **fields: Any) -> QueryRequest:
    body: dict[str, Any] = {
        "dataset": "mobility_events",
        "statistic": "unit_count",
        "group_by": ["municipality", "day"],
        "contribution_bounds_per": ["day"],
        "max_partitions_contributed": 3,
        "privacy": {"epsilon": 1},
    }
    body.update(fields)
    return QueryRequest.model_validate(body)


@pytest.mark.parametrize(
    ("statistic", "k", "c", "group_by", "per", "days"),
    [
        ("unit_count", 3, 1, ["municipality", "day"], ["day"], len(MOBILITY_DAYS)),
        ("count", 2, 4, ["municipality", "day"], ["day"], len(MOBILITY_DAYS)),
        ("count", 5, 2, ["day", "municipality"], ["municipality"], len(MOBILITY_MUNICIPALITIES)),
        ("count", 2, 3, ["municipality", "day", "hour"], ["day", "hour"], 7 * 24),
    ],
)
@pytest.mark.parametrize("model", ["pure", "zcdp"])
def test_noise_scale_is_the_hand_derivation(
    metadata: DatasetMetadata,
    statistic: str,
    k: int,
    c: int,
    group_by: list[str],
    per: list[str],
    days: int,
    model: str,
) -> None:
    """A unit has ≤ k·D groups, ≤ c rows in each, ≤ k·c·D rows: L1 = k·c·D, so the
    (discrete) Laplace scale is k·c·D/ε; L2 = √(k·D)·c, so the Gaussian σ with
    ρ = L2²/(2σ²) is √(k·D)·c/√(2ρ). OpenDP's scale must be exactly that (up to the
    last-bit rounding of the scale search), and D times (√D times) the global-k one."""
    fields: dict[str, Any] = {
        "statistic": statistic,
        "group_by": group_by,
        "contribution_bounds_per": per,
        "max_partitions_contributed": k,
        "max_contributions_per_partition": c,
    }
    privacy = {"epsilon": 1.5} if model == "pure" else {"rho": 0.5}
    plan = statistic_plan(grouped(metadata, **fields, privacy=privacy), metadata, model)  # type: ignore[arg-type]
    c_eff = 1 if statistic == "unit_count" else c
    if model == "pure":
        expected = k * c_eff * days / 1.5
    else:
        expected = math.sqrt(k * days) * c_eff / math.sqrt(2 * 0.5)
    assert plan.noise_scale == pytest.approx(expected, rel=1e-9)
    assert plan.bounds_used["contribution_bounds_per"] == per
    fields["contribution_bounds_per"] = []
    global_plan = statistic_plan(grouped(metadata, **fields, privacy=privacy), metadata, model)  # type: ignore[arg-type]
    factor = days if model == "pure" else math.sqrt(days)
    assert plan.noise_scale == pytest.approx(global_plan.noise_scale * factor, rel=1e-9)


# --- validation and the canonical form ----------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"contribution_bounds_per": ["hour"]}, "not in group_by"),
        ({"contribution_bounds_per": ["municipality", "day"]}, "leave out at least one"),
        ({"contribution_bounds_per": ["day", "day"]}, "twice"),
        ({"group_by": [], "contribution_bounds_per": ["day"]}, "not in group_by"),
        ({"contribution_bounds_per": ["device_id"]}, "not in group_by"),
    ],
)
def test_bad_bounds_per_is_refused(
    metadata: DatasetMetadata, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidQuery, match=message):
        resolve_query(grouped(metadata, **fields), metadata)


def test_canonical_form_has_bounds_per_only_when_set(metadata: DatasetMetadata) -> None:
    per_day = resolve_query(
        grouped(
            metadata,
            group_by=["day", "municipality", "hour"],
            contribution_bounds_per=["hour", "day"],
        ),
        metadata,
    )
    # in group_by order; k is capped at the municipalities one unit may choose per (day, hour)
    assert per_day.canonical()["contribution_bounds_per"] == ["day", "hour"]
    assert per_day.bounds_per_cells == 7 * 24
    plain = resolve_query(grouped(metadata, contribution_bounds_per=[]), metadata)
    assert "contribution_bounds_per" not in plain.canonical()
    capped = resolve_query(grouped(metadata, max_partitions_contributed=10_000), metadata)
    assert capped.max_partitions_contributed == len(MOBILITY_MUNICIPALITIES)


# --- automatic k per day ------------------------------------------------------------------------


def every_day(groups_per_day: int, *, units: int = 2_000, seed: int = 11) -> pl.DataFrame:
    """Every unit visits ``groups_per_day`` municipalities on each of the 7 days (1 row each)."""
    rng = np.random.default_rng(seed)
    days = len(MOBILITY_DAYS)
    order = np.argsort(rng.random((units * days, len(MOBILITY_MUNICIPALITIES))), axis=1)
    chosen = order[:, :groups_per_day].reshape(-1)
    unit_index = np.repeat(np.arange(units), days * groups_per_day)
    day_index = np.tile(np.repeat(np.arange(days), groups_per_day), units)
    return pl.DataFrame(
        {
            "device_id": [f"dev-{i:05d}" for i in unit_index],
            "municipality": np.array(MOBILITY_MUNICIPALITIES)[chosen],
            "day": [MOBILITY_DAYS[0] + timedelta(days=int(i)) for i in day_index],
        }
    )


def test_auto_k_per_day_follows_the_groups_per_day(metadata: DatasetMetadata) -> None:
    """Units visit 2 municipalities a day (14 over the week). Per day, k = 1 loses half of
    the 2000·14/280 = 100 visitors per cell, k = 3 adds 7 to the noise scale for nothing, so
    the rule picks k = 2 (its selection histogram, at 7 profile rows per unit and ε 0.1, has
    noise scale 70 against 14,000 (unit, day) pairs in bin 2: a wrong pick needs noise of
    thousands, probability far below 1e-9). The profile histogram is calibrated for 7 rows
    per unit: OpenDP's loss at that d_in is its cost."""
    plan = plan_query(grouped(metadata, max_partitions_contributed="auto"), metadata, "pure")
    assert plan.auto is not None and plan.auto.contribution is not None
    assert plan.auto.contribution.solved.scale == pytest.approx(7 / (0.1 * 0.95), rel=1e-6)
    result = execute(plan, every_day(2).lazy())
    assert result.bounds_chosen is not None
    assert result.bounds_chosen["max_partitions_contributed"] == 2
    assert result.noise_scale == pytest.approx(2 * 7 / (0.9 * 0.95), rel=1e-6)


# --- accuracy: k per day against k over the whole period --------------------------------------


def test_k_per_day_is_far_more_accurate_than_the_same_global_k(metadata: DatasetMetadata) -> None:
    """Unique devices per municipality × day (280 cells) on make_events (devices in 1–6
    municipalities, their rows on random days: about 62 devices per cell), k = 3, ε = 4,
    error against the exact UNtruncated answer. Global k = 3 keeps 3 (municipality, day)
    pairs per device over the week: about 2/3 of the visitors are lost (measured MAE ≈ 42
    per cell, almost all bias). k = 3 per day keeps nearly all (a device rarely has more
    than 3 municipalities on one day) at a noise scale of 3·7/4 = 5.25 (measured MAE ≈ 5.7).
    The per-day MAE averages 280 cells: its standard deviation is about 0.3, so exceeding
    14 (a third of the global error, itself ≥ 35 unless the noise cancels the bias) has
    probability far below 1e-12. (A global k = 21 = 3·7 has the same noise scale and keeps
    at least as many rows per unit: measured MAE ≈ 5.1; see the test above.)"""
    events = make_events()
    exact = events.group_by(["municipality", "day"]).agg(pl.col("device_id").n_unique().alias("t"))

    def mae(per: list[str]) -> float:
        query = grouped(metadata, contribution_bounds_per=per, privacy={"epsilon": 4})
        result = execute(plan_query(query, metadata, "pure"), events.lazy())
        got = pl.DataFrame(
            result.rows, schema=["municipality", "day", "v"], orient="row"
        ).with_columns(pl.col("day").str.to_date())
        joined = got.join(exact, on=["municipality", "day"], how="left").fill_null(0)
        return float((joined["v"] - joined["t"]).abs().mean())

    per_day, global_k = mae(["day"]), mae([])
    assert global_k > 35
    assert per_day < global_k / 3
    assert per_day < 8


# --- D under filters on the bounds_per columns ----------------------------------------------

day_filters = st.lists(
    st.tuples(
        st.sampled_from(["eq", "in", "between", "lt", "le", "gt", "ge"]),
        st.lists(st.integers(-1, 7), min_size=1, max_size=3),
    ),
    max_size=3,
)


@settings(max_examples=100, deadline=None)
@given(filters=day_filters)
def test_d_counts_exactly_the_days_the_filters_let_through(
    metadata: DatasetMetadata, filters: list[tuple[str, list[int]]]
) -> None:
    """D (what the noise is calibrated for) must be at least the number of public days a
    row can have after the row filters, as Polars applies them: here it is exactly that
    number (at least 1), on a frame with every public day."""
    where: list[dict[str, Any]] = []
    for op, offsets in filters:
        days = [(MOBILITY_DAYS[0] + timedelta(days=o)).isoformat() for o in offsets]
        value: Any = (
            days if op == "in" else sorted([days[0], days[-1]]) if op == "between" else days[0]
        )
        where.append({"column": "day", "op": op, "value": value})
    request = grouped(metadata, where=where)
    try:
        resolved = resolve_query(request, metadata)
    except InvalidQuery:
        return  # a filter no public day satisfies: refused before anything runs
    data = pl.DataFrame(
        {
            "device_id": "d",
            "municipality": MOBILITY_MUNICIPALITIES[0],
            "day": MOBILITY_DAYS,
        }
    )
    masked = masked_frame(resolved, metadata, data.lazy()).collect()
    reachable = masked.filter(pl.col(MATCH_COLUMN))["day"].n_unique()
    assert resolved.bounds_per_cells == max(1, reachable)


def test_a_filter_to_one_day_pays_for_one_day(metadata: DatasetMetadata) -> None:
    one_day = [{"column": "day", "op": "eq", "value": MOBILITY_DAYS[2].isoformat()}]
    plan = statistic_plan(grouped(metadata, where=one_day), metadata, "pure")
    assert plan.noise_scale == pytest.approx(3 * 1 / 1, rel=1e-9)
