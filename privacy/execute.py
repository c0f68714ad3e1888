"""Execute a plan once on the data: filter (as a mask), truncate, release, lay out.

:func:`execute` applies the row-wise filters and our per-unit truncation
(:mod:`privacy.truncation`) to the real data, invokes the plan's measurement
once and lays the noisy values out on the public key product. The filters are
carried as a mask through the truncation rather than applied by dropping rows
first, so that the work does not depend on how many rows they match
(:func:`masked_frame`; "Timing" in :mod:`privacy.truncation`).

Privacy, end to end: the released values are ``M(T(F(D)))`` where ``F`` are the
row-wise ``where`` filters (and dropping rows whose unit, keys or value are
missing), ``T`` the per-unit truncation to ``k`` groups × ``c`` rows, and ``M``
the OpenDP measurement, which is ε-DP (ρ-zCDP) at ``d_in = [Bound(by=group_by,
per_group=c, num_groups=k)]``. ``F`` and ``T`` map each unit's rows to rows of
that unit only, within those bounds, so ``M ∘ T ∘ F`` is ε-DP (ρ-zCDP) with
respect to adding or removing all rows of one privacy unit. The layout of the
rows is post-processing on public keys.

Automatic bounds (``"auto"``; :mod:`privacy.auto`, where the rule and the
privacy argument are written out): the plan split the cost exactly between
small DP selection releases and the statistic; :func:`execute` runs the
selection first (:func:`privacy.auto.run_selection`), which chooses the bounds
by post-processing, and releases the statistic at them; by sequential
composition the total loss is the sum of OpenDP's maps, checked to be ≤ the
cost.

``rollup`` (:mod:`privacy.rollup`): the parent level's measurement runs once on
the same measured frame (its parent column added row-wise from the public map);
the plan's ``opendp_loss`` already holds both maps, and the consistent layout is
post-processing.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from decimal import Decimal
from typing import Any

import polars as pl

from privacy.amount import PrivacyAmount
from privacy.auto import Selection, run_selection
from privacy.compile import cached_plan
from privacy.data import dtype_of
from privacy.errors import ReleaseFailed
from privacy.kept import BIAS_ALPHA_SHARE, TruncationEstimate, run_truncation
from privacy.location import unit_locations
from privacy.mean_accuracy import cell_half_width, mean_cell, mean_noise
from privacy.measurement import (
    MEAN_COUNT_COLUMN,
    MEAN_SUM_COLUMN,
    VALUE_COLUMN,
    measurement_input,
    quantile_candidates,
    scale_to_accuracy,
    truncated_schema,
)
from privacy.metadata import DatasetMetadata, iso
from privacy.quantile_accuracy import rank_error_rows
from privacy.query import ResolvedFilter, ResolvedQuery, explicit_cost
from privacy.results import NOISE_AND_BIAS, Accuracy, Plan, ReleaseResult
from privacy.rollup import RollupRelease, release_rollup
from privacy.rollup import plan_accuracy as rollup_accuracy
from privacy.truncation import truncate_contributions, unit_group_counts

MATCH_COLUMN = "__ruis_match__"
"""The mask column of :func:`masked_frame`: the row passes the filters."""


def _filter_expression(flt: ResolvedFilter, dtype: pl.DataType) -> pl.Expr:
    """The row-wise test of one filter. A NaN satisfies no comparison (as in IEEE 754 and
    SQL), although Polars orders NaN above every number (``NaN > 1000`` is true there)."""
    expression = _comparison(flt, dtype)
    if dtype.is_float():
        return expression & pl.col(flt.column).is_not_nan()
    return expression


def _comparison(flt: ResolvedFilter, dtype: pl.DataType) -> pl.Expr:
    column = pl.col(flt.column)
    if flt.op == "in":
        return column.is_in(pl.Series(list(flt.typed), dtype=dtype).implode())
    if flt.op == "between":
        low, high = flt.typed
        return column.is_between(pl.lit(low, dtype=dtype), pl.lit(high, dtype=dtype), closed="both")
    value = pl.lit(flt.typed, dtype=dtype)
    comparisons = {
        "eq": column.eq,
        "lt": column.lt,
        "le": column.le,
        "gt": column.gt,
        "ge": column.ge,
    }
    return comparisons[flt.op](value)


def prepare_frame(plan: Plan, data: pl.LazyFrame) -> pl.LazyFrame:
    """The truncated frame the plan's measurement takes (lazy; see the module docstring).

    ``T(F(D))``: the rows :func:`filtered_frame` keeps, truncated per unit. The
    filters are applied as a mask (:func:`masked_frame`) carried through the
    truncation, so the work runs over every row of ``data`` whatever the
    filters match; the result is the same multiset of rows as truncating the
    filtered frame.
    """
    query, metadata = plan.query, plan.metadata
    assert query is not None and metadata is not None
    return _truncated(query, metadata, masked_frame(query, metadata, data))


def _truncated(
    query: ResolvedQuery,
    metadata: DatasetMetadata,
    frame: pl.LazyFrame,
    counts: pl.LazyFrame | None = None,
) -> pl.LazyFrame:
    """``T`` at the query's bounds, applied to :func:`masked_frame`'s frame (lazy);
    ``counts``, if given, is :func:`~privacy.truncation.unit_group_counts` of that frame.
    With ``unit_location``, the map ``L`` of :mod:`privacy.location` instead: one row per
    unit, in the group of its most frequent value."""
    if query.location is not None:
        (target,) = query.group_by
        return unit_locations(
            frame,
            unit=metadata.privacy_unit,
            column=query.location,
            mask=MATCH_COLUMN,
            target=target,
            mapping=(
                metadata.rollup_map(query.location, target) if target != query.location else None
            ),
            counts=counts,
        )
    return truncate_contributions(
        frame,
        unit=metadata.privacy_unit,
        by=query.group_by,
        max_groups=query.max_partitions_contributed,
        max_rows_per_group=query.max_contributions_per_partition,
        mask=MATCH_COLUMN,
        per=query.bounds_per,
        counts=counts,
    )


def masked_frame(
    query: ResolvedQuery, metadata: DatasetMetadata, data: pl.LazyFrame
) -> pl.LazyFrame:
    """Every row of ``data``, with the unit, group and value columns and the mask ``MATCH_COLUMN``.

    ``MATCH_COLUMN`` (Boolean, never null) is true exactly for the rows
    :func:`filtered_frame` keeps: those matching the ``where`` filters, with a
    unit, group keys among the public keys (with ``unit_location``: a public key of
    its column, see :func:`grouping_columns`; a column with private keys: any value but
    null), and (sum, mean, quantile) a value
    that is not null/NaN. Row-wise only; no row is dropped, so what follows
    works on as many rows as the file has, whatever the filters match.
    """
    unit = metadata.privacy_unit
    conditions: list[pl.Expr] = [
        _filter_expression(f, dtype_of(metadata.columns[f.column].value_type))
        for f in query.filters
    ]
    conditions.append(pl.col(unit).is_not_null())
    grouping = grouping_columns(query)
    for name in grouping:
        spec = metadata.columns[name]
        if spec.private_keys:  # no public keys: any value but null (OpenDP selects keys)
            conditions.append(pl.col(name).is_not_null())
            continue
        keys = pl.Series(spec.typed_keys(), dtype=dtype_of(spec.value_type))
        conditions.append(pl.col(name).is_in(keys.implode()))
    if query.column is not None:
        conditions.append(pl.col(query.column).is_not_null())
        if query.column_type == "float":
            conditions.append(pl.col(query.column).is_not_nan())
    schema = truncated_schema(query, metadata)
    return data.select(
        [
            pl.col(unit).cast(pl.String),
            *(pl.col(name).cast(dtype_of(metadata.columns[name].value_type)) for name in grouping),
            *(
                [pl.col(query.column).cast(schema[VALUE_COLUMN]).alias(VALUE_COLUMN)]
                if query.column is not None
                else []
            ),
            pl.all_horizontal(conditions).fill_null(False).alias(MATCH_COLUMN),
        ]
    )


def grouping_columns(query: ResolvedQuery) -> tuple[str, ...]:
    """The columns a unit's rows are grouped by before the measurement: ``group_by``, or
    with ``unit_location`` its column (the group is then derived from the unit's most
    frequent value of it, never read from the data's coarser column)."""
    return (query.location,) if query.location is not None else query.group_by


def filtered_frame(
    query: ResolvedQuery, metadata: DatasetMetadata, data: pl.LazyFrame
) -> pl.LazyFrame:
    """The rows a query looks at, before truncation (lazy; row-wise only): ``F(D)``.

    Applies the ``where`` filters, drops rows whose unit is null, whose group
    keys are not public keys, or whose value is null/NaN (sum, mean,
    quantile), and keeps the unit, group and value columns. Releases do not
    use it (they carry :func:`masked_frame`'s mask instead, so that their work
    does not shrink with the matches); it states what the mask selects.
    """
    return masked_frame(query, metadata, data).filter(pl.col(MATCH_COLUMN)).drop(MATCH_COLUMN)


def _post_process(plan: Plan, value: Any) -> float:
    """A released value as a finite float (data-independent post-processing only).

    With ``post_process: ["non_negative"]`` a count below 0 is released as 0.
    (A ``mean`` is laid out by :func:`privacy.mean_accuracy.mean_cell`.)
    """
    number = float(value)
    query = plan.query
    assert query is not None
    if not math.isfinite(number):
        raise ReleaseFailed("the release produced a non-finite value")
    if "non_negative" in query.post_process:
        # Projection onto [0, ∞), which holds the true count: |max(x, 0) − t| ≤ |x − t|
        # for every t ≥ 0, so the plan's error bound still covers the cell.
        return max(number, 0.0)
    return number


def execute(plan: Plan, data: pl.LazyFrame) -> ReleaseResult:
    """Run the plan once on ``data`` (a :func:`~privacy.data.load_frame` frame).

    The result's rows are one ``[key_1, ..., value]`` per combination of public
    keys of ``group_by`` (in declared key order, dates as ISO strings, values as
    floats), including combinations without data; ``[[value]]`` without
    grouping. The set and order of rows depend only on public metadata — except with
    private keys (``"keys": "private"``): then the rows are the groups OpenDP's key
    selection released (within its δ), sorted by key, and ``keys_selected`` counts them. The
    guarantee is the plan's (see the module docstring). With automatic bounds
    the selection measurements run first and the statistic is then released at
    the bounds chosen (see :mod:`privacy.auto`); the result says which, and the
    statistic's noise and accuracy there. Where the bounds can drop data, the
    truncation measurements then estimate what they dropped (:mod:`privacy.kept`)
    and, for counts, the accuracy covers that bias too.
    """
    query, metadata = plan.query, plan.metadata
    assert query is not None and metadata is not None
    frame = masked_frame(query, metadata, data)
    selected: Selection | None = None
    if plan.auto is not None:
        statistic, selected = _select(plan, frame)
        truncated, counts = selected.truncated, selected.counts
        k, c, clamp = selected.k, selected.c, selected.clamp
        losses = [*selected.losses, statistic.opendp_loss]
    else:
        statistic = plan
        counts = None
        if plan.truncation is not None:  # one pass over the rows for the truncation and
            # the estimate of what it drops (both start from the per-(unit, group) counts)
            counts = (
                unit_group_counts(
                    frame, unit=metadata.privacy_unit, by=query.group_by, mask=MATCH_COLUMN
                )
                .collect(engine="streaming")
                .lazy()
            )
        truncated = _truncated(query, metadata, frame, counts).collect(engine="streaming")
        k, c, clamp = (
            query.max_partitions_contributed,
            query.max_contributions_per_partition,
            query.bounds,
        )
        losses = [plan.statistic_loss if plan.statistic_loss is not None else plan.opendp_loss]
    measured = measurement_frame(statistic, truncated)
    released = statistic.measurement(measured).collect()
    levels: RollupRelease | None = None
    if statistic.rollup is not None:  # the parent level: same input and scale (privacy.rollup)
        levels = release_rollup(
            statistic, released, statistic.rollup.measurement(measured).collect()
        )
        rows = levels.rows
        accuracy = rollup_accuracy(statistic, statistic.accuracy.alpha, grid=levels.grid)
    else:
        rows = _layout(statistic, released)
        accuracy = released_accuracy(statistic, rows)
    estimate: TruncationEstimate | None = None
    if plan.truncation is not None:
        estimate = run_truncation(
            plan.truncation,
            query,
            unit=metadata.privacy_unit,
            frame=frame,
            truncated=truncated,
            mask=MATCH_COLUMN,
            k=k,
            c=c,
            clamp=clamp,
            released_total=_released_total(statistic, released),
            alpha=accuracy.alpha,
            counts=counts,
        )
        losses.append(estimate.opendp_loss)
        if levels is not None:
            if estimate.bias_bound is not None:
                accuracy = rollup_accuracy(
                    statistic,
                    accuracy.alpha,
                    grid=levels.grid,
                    bias_bound=estimate.bias_bound,
                    noise_share=1 - BIAS_ALPHA_SHARE,
                )
        else:
            accuracy = _covering(statistic, accuracy, estimate)
    spent = spent_within_cost(plan, losses)
    return ReleaseResult(
        rows=rows,
        mechanism=statistic.mechanism,
        noise_scale=statistic.noise_scale,
        accuracy=accuracy,
        components=statistic.components,
        opendp_loss=float(spent),
        bounds_chosen=selected.bounds_chosen() if selected is not None else None,
        selection=selected.record if selected is not None else None,
        truncation=estimate,
        raw_rows=levels.raw_rows if levels is not None else None,
        keys_selected=len(rows) if statistic.key_selection is not None else None,
    )


def spent_within_cost(plan: Plan, losses: list[float]) -> Decimal:
    """The sum of the measurements' OpenDP losses (sequential composition), exactly;
    :class:`ReleaseFailed` if it exceeds the plan's cost (every engine checks this)."""
    spent = sum((Decimal(loss) for loss in losses), Decimal(0))
    if not spent <= plan.cost:
        raise ReleaseFailed("the privacy losses of the measurements exceed the cost")
    return spent


def _select(plan: Plan, frame: pl.LazyFrame) -> tuple[Plan, Selection]:
    """Run the selection of automatic bounds; the statistic's plan at the bounds chosen."""
    query, metadata, auto = plan.query, plan.metadata, plan.auto
    assert query is not None and metadata is not None and auto is not None
    selected = run_selection(auto, query, metadata, frame, MATCH_COLUMN)
    statistic = cached_plan(
        query.with_bounds(
            selected.k,
            selected.c,
            selected.clamp,
            explicit_cost(PrivacyAmount.of(plan.model, auto.statistic_cost)),
        ),
        metadata,
        plan.model,
        plan.accuracy.alpha,
    )
    return statistic, selected


def _released_total(plan: Plan, released: pl.DataFrame) -> tuple[float, str, float] | None:
    """Count and unit_count: the sum of the released cells (raw, before post-processing),
    and the noise's distribution and scale per cell (post-processing of the release)."""
    query = plan.query
    assert query is not None
    if query.statistic not in ("count", "unit_count"):
        return None
    component = plan.components[0]
    total = float(released.get_column(VALUE_COLUMN).cast(pl.Float64).sum())
    return total, component.distribution, component.scale


def _covering(plan: Plan, accuracy: Accuracy, estimate: TruncationEstimate) -> Accuracy:
    """The accuracy of a count release covering noise and truncation bias.

    With probability ≥ 1 − (1 − s)·α the noise in a cell is within OpenDP's
    accuracy at (1 − s)·α (``s`` = :data:`~privacy.kept.BIAS_ALPHA_SHARE`), and with
    probability ≥ 1 − s·α every cell's bias (≥ 0: bounding only drops) is at most
    ``bias_bound``; by a union bound the truth on the whole data lies in
    ``[value − noise, value + noise + bias_bound]`` w.p. ≥ 1 − α. Other statistics
    keep ``accuracy`` (noise only).
    """
    if estimate.bias_bound is None:
        return accuracy
    query = plan.query
    assert query is not None
    if query.statistic == "quantile":
        return _covering_ranks(plan, accuracy, estimate.bias_bound)
    component = plan.components[0]
    noise = scale_to_accuracy(
        component.distribution, component.scale, accuracy.alpha * (1 - BIAS_ALPHA_SHARE)
    )
    if noise is None:
        return accuracy
    return replace(
        accuracy,
        error_bound=noise + estimate.bias_bound,
        covers=NOISE_AND_BIAS,
        noise_error_bound=noise,
        bias_bound=estimate.bias_bound,
    )


def _covering_ranks(plan: Plan, accuracy: Accuracy, dropped_rows: float) -> Accuracy:
    """A quantile's rank bound on the whole data: ``r + D`` rows.

    If the released value lies between the truncated cell's order statistics at ranks
    ``q·n_k ∓ r`` (``n_k = n − D_c`` rows kept of ``n``), then — a subset's j-th smallest
    lying between the whole cell's j-th and (j + D_c)-th — it lies between the whole
    cell's at ranks ``q·n ∓ (r + D_c)``; ``D_c`` is at most the dropped total, whose
    DP upper bound ``dropped_rows`` holds w.p. ≥ 1 − s·α. ``r`` is taken at (1 − s)·α.
    """
    query, metadata = plan.query, plan.metadata
    assert query is not None and metadata is not None and query.q is not None
    assert query.bounds is not None and query.column_type is not None
    assert metadata.max_rows is not None
    rank = rank_error_rows(
        plan.components[0].scale,
        len(quantile_candidates(query.bounds, query.column_type)),
        accuracy.alpha * (1 - BIAS_ALPHA_SHARE),
        query.q,
        metadata.max_rows,
    )
    return replace(
        accuracy,
        rank_error_bound=rank + dropped_rows,
        covers=NOISE_AND_BIAS,
        bias_bound=dropped_rows,
    )


def measurement_frame(plan: Plan, truncated: pl.DataFrame) -> pl.LazyFrame:
    """``truncated`` as ``plan``'s measurement takes it (a float sum's value in fixed point)."""
    query, metadata = plan.query, plan.metadata
    assert query is not None and metadata is not None
    if query.rollup is None:
        return measurement_input(truncated.lazy(), query.bounds, plan.fixed_point)
    parent_dtype = dtype_of(metadata.columns[query.rollup.parent].value_type)
    return measurement_input(
        truncated.lazy(), query.bounds, plan.fixed_point, query.rollup, parent_dtype
    )


def _cell_values(plan: Plan, released: pl.DataFrame) -> list[tuple[tuple[Any, ...], list[float]]]:
    """Per released row: its keys and values (``[value]``, or for ``mean`` ``[value, lower,
    upper]`` from the cell's noisy sum and count by :func:`privacy.mean_accuracy.mean_cell`).
    Post-processing of the DP output only."""
    query = plan.query
    assert query is not None
    by = list(query.group_by)
    unit = float(plan.fixed_point or 1)  # a fixed-point sum counts 1/S of the column
    if query.statistic != "mean":
        return [
            (tuple(row[:-1]), [_post_process(plan, _unscaled(row[-1], unit))])
            for row in released.select([*by, VALUE_COLUMN]).iter_rows()
        ]
    assert query.bounds is not None
    bounds = (float(query.bounds[0]), float(query.bounds[1]))
    noise = mean_noise(plan.components, plan.accuracy.alpha, bounds)
    return [
        (tuple(row[:-2]), list(mean_cell(noise, _finite(row[-2]) / unit, _finite(row[-1]))))
        for row in released.select([*by, MEAN_SUM_COLUMN, MEAN_COUNT_COLUMN]).iter_rows()
    ]


def _unscaled(value: Any, unit: float) -> Any:
    return value if unit == 1.0 or value is None else float(value) / unit


def _finite(value: Any) -> float:
    """A released number as a float; 0 for a missing or non-finite one (no claim then)."""
    if value is None:
        return 0.0
    number = float(value)
    return number if math.isfinite(number) else 0.0


def released_accuracy(plan: Plan, rows: list[list[Any]]) -> Accuracy:
    """The release's accuracy: the plan's; for ``mean`` with ``error_bound`` the largest
    per-cell half-width around the released value (post-processing of DP outputs)."""
    query = plan.query
    assert query is not None
    if query.statistic != "mean" or not rows:
        return plan.accuracy
    widest = max(cell_half_width(*(float(x) for x in row[-3:])) for row in rows)
    return replace(plan.accuracy, error_bound=widest)


def _sort_key(key: Any) -> tuple[int, Any]:
    """A key's place in the order of released rows (never null: the mask drops nulls)."""
    return (0, key) if key is not None else (1, 0)


def _layout(plan: Plan, released: pl.DataFrame) -> list[list[Any]]:
    """The released values on the public key product (post-processing); with private keys,
    the groups OpenDP released, sorted by their keys."""
    query, metadata = plan.query, plan.metadata
    assert query is not None and metadata is not None
    cells = _cell_values(plan, released)
    if not query.group_by:
        if len(cells) != 1:
            raise ReleaseFailed("the release does not have exactly one row")
        return [cells[0][1]]
    if query.private_keys:  # the keys OpenDP selected, sorted by key: a stable order
        ordered = sorted(cells, key=lambda cell: tuple(_sort_key(k) for k in cell[0]))
        return [[*(iso(k) for k in keys), *values] for keys, values in ordered]
    by = list(query.group_by)
    values = dict(cells)
    rows: list[list[Any]] = []
    for combination in itertools.product(*(metadata.columns[n].typed_keys() for n in by)):
        if combination not in values:
            raise ReleaseFailed("the release lacks a public key combination")
        rows.append([*(iso(k) for k in combination), *values[combination]])
    return rows
