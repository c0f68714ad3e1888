"""The Spark engine: the exact, contribution-bounded aggregate computed on Spark, OpenDP's
noise applied to it at the scale OpenDP derives for the equivalent Polars plan.

The plan is split at the noise step, as OpenDP's ``polars-to-ibis`` does for databases:

1. **On Spark**: the row-wise filters ``F`` (as a mask over every row, as
   :func:`privacy.execute.masked_frame`), the per-unit truncation ``T`` of
   :mod:`privacy.truncation` (the same rule and tie-break: a unit keeps its ``k`` groups
   with most matching rows, ties broken by the same fixed Polars hash of (unit, group
   key), then by the key; in each, its ``c`` matching rows first in the same Polars hash
   of the row, then by value) and the grouped statistic over the public keys. ``count``
   (:func:`exact_cells`): per cell ``Σ_u min(rows_u, c)`` over the units that keep it
   (``unit_count`` has ``c = 1``). ``sum`` and ``mean`` (:func:`kept_rows`,
   :func:`value_cells`): per cell the sum of the kept rows' values as OpenDP's
   ``dp.sum`` sums them — clipped to the bounds; a float column in fixed point,
   :func:`privacy.measurement.fixed_point_value`, exact integers — and, for a mean, the
   number of kept rows. ``unit_location`` (:func:`location_cells`): per key, the units
   whose most frequent key it is (:mod:`privacy.location`'s map ``L``, same tie-break),
   summed over the public hierarchy map to a coarser column. Cells without data are 0.
   Polars computes the hashes and the
   row values on the executors, so they are the Polars engine's bit for bit.
2. **In OpenDP** (:func:`noisy_cells`): OpenDP's mechanism (``make_laplace`` or
   ``make_gaussian`` on integer vectors: the discrete Laplace or Gaussian) at the scale
   OpenDP's ``summarize`` reports for the plan's Polars measurement — never a scale
   derived here (a fixed-point sum's scale is reported in column units, ``S = 2^p``
   times smaller; it is multiplied back, exactly).

**Privacy argument.** OpenDP's Polars measurement of a count, sum or mean over public
keys is exactly that: the grouped count of ``T(F(D))`` (or the sum of its clipped
values, and the count, at one global scale) per public key (0 where none), then
independent integer noise per cell at the summarized scale. Step 1 computes the same
numbers (tests compare them with the Polars engine's on generated data, cell by cell)
and step 2 draws from the same distribution at the same scale, so the release has the
distribution of the Polars engine's: the plan's OpenDP map, hence its cost, holds
unchanged. Noise on floats (a float column's sum under zCDP, whose float rounding
depends on the order of summation) is not reproduced: refused (:func:`check_plan_supported`).

The estimate of what the bounds dropped (:mod:`privacy.kept`) needs one row per unit:
Spark computes that per-unit profile (:func:`dropped_profile_rows`, the same per-unit map
as :func:`privacy.kept.dropped_profile`) and OpenDP's own Polars measurement releases it;
for a sum or mean also one row per kept row, whether its value lies outside the clamp
(:func:`outside_rows`), which OpenDP's measurement of :mod:`privacy.kept` releases.

What the engine lacks is refused before any debit (:func:`check_supported`), naming it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import opendp.prelude as dp
import polars as pl

from privacy.errors import InvalidQuery
from privacy.kept import DROPPED_COLUMN, OUTSIDE_COLUMN, TruncationEstimate, run_truncation
from privacy.measurement import (
    MEAN_COUNT_COLUMN,
    MEAN_SUM_COLUMN,
    VALUE_COLUMN,
    fixed_point_value,
)
from privacy.metadata import DatasetMetadata
from privacy.query import ResolvedFilter, ResolvedQuery
from privacy.results import Plan, ReleaseResult
from privacy.truncation import _GROUP_SEED, _ROW_SEED

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa
    from pyspark.sql import Column, DataFrame, SparkSession

SPARK_STATISTICS = ("count", "unit_count", "sum", "mean")
"""The statistics the Spark engine computes."""
_MATCH = "__ruis_match__"
_ROWS = "__ruis_rows__"
_HASH = "__ruis_group_hash__"
_RANK = "__ruis_rank__"
_VALUE = "__ruis_value__"  # VALUE_COLUMN's name on Spark (a dot would address a field)
_ROW_HASH = "__ruis_row_hash__"
_MEASURED = "__ruis_measured__"
_POSITION = "__ruis_position__"
_INTEGER_NOISE = ("Integer Laplace", "Integer Gaussian")
_SIGN_BIT = 1 << 63


def frame_schema(data: DataFrame) -> pl.Schema:
    """``data``'s schema as Polars types (through Arrow's, as PySpark converts them)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    empty = pl.from_arrow(to_arrow_schema(data.schema).empty_table())
    assert isinstance(empty, pl.DataFrame)
    return empty.schema


def polars_version() -> str:
    """The Polars this process runs (the truncation's tie-break hash is stable within one)."""
    return str(pl.__version__)


def executor_polars_versions(spark: SparkSession) -> set[str]:
    """The Polars versions ``spark``'s executors run: one task per default partition.

    The tie-break hash of the truncation is computed on the executors with Polars; the
    engine is equal to the Polars engine only if they run :func:`polars_version`."""

    def version(_: object) -> str:
        import polars

        return str(polars.__version__)

    parallelism = max(1, spark.sparkContext.defaultParallelism)
    rdd = spark.sparkContext.parallelize(range(parallelism), parallelism)
    return set(rdd.map(version).distinct().collect())


def check_supported(query: ResolvedQuery, metadata: DatasetMetadata) -> None:
    """Raise :class:`InvalidQuery` naming what the Spark engine lacks for ``query``
    (public metadata only, so the refusal reveals nothing and spends nothing)."""
    lacks: list[str] = []
    if query.statistic not in SPARK_STATISTICS:
        lacks.append(
            f"the statistic {query.statistic!r} (it computes {', '.join(SPARK_STATISTICS)})"
        )
    if query.auto is not None:
        lacks.append("automatic bounds (give max_partitions_contributed explicitly)")
    if query.private_keys:
        lacks.append("group_by columns with private keys")
    if query.rollup is not None:
        lacks.append("rollup")
    if query.bounds_per:
        lacks.append("contribution_bounds_per")
    derived = [
        name
        for name in {*query.group_by, *(f.column for f in query.filters)}
        if metadata.columns[name].type == "derived"
    ]
    if derived:
        lacks.append(f"derived columns ({', '.join(sorted(derived))})")
    if lacks:
        raise InvalidQuery("the spark engine does not support " + "; ".join(lacks))


def check_plan_supported(plan: Plan) -> None:
    """Raise :class:`InvalidQuery` if ``plan``'s noise is not on integers: the engine adds
    OpenDP's integer noise to exact integer cells only. A float column's ``sum`` or
    ``mean`` is summed in fixed point under the pure model (exact integers on every
    engine); under zCDP OpenDP sums it as floats, whose rounding depends on the order of
    summation, so Spark could not reproduce the Polars engine's sum. Public facts only."""
    floats = [c.aggregate for c in plan.components if c.distribution not in _INTEGER_NOISE]
    if floats:
        raise InvalidQuery(
            "the spark engine does not support noise on floats (the "
            f"{' and '.join(sorted(set(floats)))} of a float column under zCDP); use the "
            "pure model, where a float column is summed in fixed point"
        )


def _spark_type(value_type: str) -> str:
    return {
        "categorical": "string",
        "integer": "bigint",
        "float": "double",
        "date": "date",
        "datetime": "timestamp",
    }[value_type]


def _filter_column(flt: ResolvedFilter, value_type: str) -> Column:
    """The row-wise test of one filter, as :func:`privacy.execute._filter_expression`:
    a NaN satisfies no comparison."""
    from pyspark.sql import functions as F

    column = F.col(flt.column)
    if flt.op == "in":
        test = column.isin(list(flt.typed))
    elif flt.op == "between":
        low, high = flt.typed
        test = column.between(F.lit(low), F.lit(high))
    else:
        value = F.lit(flt.typed)
        test = {
            "eq": column == value,
            "lt": column < value,
            "le": column <= value,
            "gt": column > value,
            "ge": column >= value,
        }[flt.op]
    if value_type == "float":
        return test & ~F.isnan(column)
    return test


def masked(query: ResolvedQuery, metadata: DatasetMetadata, data: DataFrame) -> DataFrame:
    """Every row of ``data`` with the unit (string), the group keys (cast as the Polars
    engine casts them; a value that does not fit becomes null) and the Boolean mask of
    :func:`privacy.execute.masked_frame`: the row matches the filters, has a unit and
    public group keys (with ``unit_location``: public keys of its column, which replaces
    the group columns here, as :func:`privacy.execute.grouping_columns` says). No row is
    dropped (the work does not depend on the matches)."""
    from pyspark.sql import functions as F

    unit = metadata.privacy_unit
    grouping = _grouping(query)
    needed = {*grouping, *(f.column for f in query.filters)}
    value: list[Column] = []
    if query.column is not None:  # the summed value, cast as the Polars engine casts it
        assert query.column_type is not None
        value.append(F.col(query.column).cast(_spark_type(query.column_type)).alias(_VALUE))
    typed = data.select(
        F.col(unit).cast("string").alias(unit),
        *(
            F.col(name).cast(_spark_type(metadata.columns[name].value_type)).alias(name)
            for name in sorted(needed)
        ),
        *value,
    )
    conditions = [_filter_column(f, metadata.columns[f.column].value_type) for f in query.filters]
    conditions.append(F.col(unit).isNotNull())
    for name in grouping:
        conditions.append(F.col(name).isin(metadata.columns[name].typed_keys()))
    values: list[str] = []
    if query.column is not None:  # a value that is not null (nor NaN)
        values.append(_VALUE)
        conditions.append(F.col(_VALUE).isNotNull())
        if query.column_type == "float":
            conditions.append(~F.isnan(F.col(_VALUE)))
    mask = conditions[0]
    for condition in conditions[1:]:
        mask = mask & condition
    match = F.coalesce(mask, F.lit(False)).alias(_MATCH)
    return typed.select(unit, *grouping, *values, match)


def _grouping(query: ResolvedQuery) -> tuple[str, ...]:
    """:func:`privacy.execute.grouping_columns`: ``group_by``, or the location column."""
    return (query.location,) if query.location is not None else query.group_by


def location_cells(
    query: ResolvedQuery, metadata: DatasetMetadata, data: DataFrame
) -> pl.DataFrame:
    """The exact pre-noise counts of a ``unit_location`` query: per public key of the
    grouped column, the number of units whose most frequent key of the location column
    (most matching rows, ties to the smallest key: :func:`privacy.location.unit_locations`)
    is that key or, grouped by a coarser column, maps to it (the public hierarchy map,
    applied here to the per-key counts: a sum over the keys with that image). Units with
    no matching row count nowhere. The per-(unit, key) counts run over every row."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    assert query.location is not None
    unit, column = metadata.privacy_unit, query.location
    (target,) = query.group_by
    counts = (
        masked(query, metadata, data)
        .groupBy(unit, column)
        .agg(F.sum(F.col(_MATCH).cast("long")).alias(_ROWS))
    )
    order = Window.partitionBy(unit).orderBy(F.col(_ROWS).desc(), F.col(column).asc())
    modal = counts.withColumn(_RANK, F.row_number().over(order)).filter(
        (F.col(_RANK) == 1) & (F.col(_ROWS) > 0)
    )
    per_key = {row[column]: int(row["count"]) for row in modal.groupBy(column).count().collect()}
    mapping = metadata.rollup_map(column, target) if target != column else None
    values: dict[tuple[Any, ...], int] = {}
    for key, units in per_key.items():
        image = mapping[str(key)] if mapping is not None else key
        values[(image,)] = values.get((image,), 0) + units
    return public_cells(query, metadata, values)


def _with_group_hash(counts: DataFrame, group_key: Sequence[str]) -> DataFrame:
    """``counts`` plus the truncation's tie-break hash of (unit, group key), computed by
    Polars itself on each Arrow batch (:mod:`privacy.truncation`'s
    ``pl.struct(group_key).hash(_GROUP_SEED)``), stored order-preservingly as a signed
    64-bit integer (the sign bit flipped), so that Spark orders ties as Polars does.
    Executors must run the driver's Polars version (the hash is stable within one)."""
    from pyspark.sql.types import LongType, StructField, StructType

    key = list(group_key)

    def hashed(batches: Iterable[pa.RecordBatch]) -> Iterable[pa.RecordBatch]:
        import polars as pl
        import pyarrow as pa

        flip = pl.lit(_SIGN_BIT, dtype=pl.UInt64)
        for batch in batches:
            frame = pl.from_arrow(batch)
            assert isinstance(frame, pl.DataFrame)
            signed = frame.select(
                (pl.struct(key).hash(_GROUP_SEED) ^ flip).reinterpret(signed=True)
            )
            yield batch.append_column(_HASH, pa.array(signed.to_series().to_numpy(), pa.int64()))

    schema = StructType([*counts.schema.fields, StructField(_HASH, LongType(), True)])
    return counts.mapInArrow(hashed, schema)


def kept_groups(query: ResolvedQuery, metadata: DatasetMetadata, data: DataFrame) -> DataFrame:
    """Per (unit, group) of ``data``: its matching rows ``_ROWS`` and whether the truncation
    keeps it (``_RANK`` ≤ k and rows > 0), by :mod:`privacy.truncation`'s rule: the unit's
    groups ordered by rows (descending), then the fixed hash, then the key. One group-by
    over every row, whatever the mask keeps."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    unit = metadata.privacy_unit
    by = list(query.group_by)
    counts = (
        masked(query, metadata, data)
        .groupBy(unit, *by)
        .agg(F.sum(F.col(_MATCH).cast("long")).alias(_ROWS))
    )
    if not by:
        return counts.withColumn(_RANK, F.lit(1))
    ranked = _with_group_hash(counts, [unit, *by])
    order = Window.partitionBy(unit).orderBy(
        F.col(_ROWS).desc(), F.col(_HASH).asc(), *(F.col(name).asc() for name in by)
    )
    return ranked.withColumn(_RANK, F.row_number().over(order)).drop(_HASH)


def _with_row_values(
    rows: DataFrame, query: ResolvedQuery, unit: str, fixed_point: int | None
) -> DataFrame:
    """:func:`masked`'s ``rows`` plus, per row, computed by Polars itself on each Arrow batch:

    - ``_ROW_HASH``: :mod:`privacy.truncation`'s tie-break among a unit's rows in a group,
      ``pl.struct([unit, *group_by, VALUE_COLUMN]).hash(_ROW_SEED)`` (the Polars engine's
      truncated columns, same names, order and types), sign bit flipped so that Spark
      orders it as Polars orders the unsigned hash; null where the row does not match;
    - ``_MEASURED``: the value the measurement sums (Int64): ``clip(x, L, U)`` of an integer
      column, :func:`privacy.measurement.fixed_point_value` of a float one.

    The expressions are built here and shipped to the executors (only Polars is needed
    there; its version is the driver's)."""
    from pyspark.sql.types import LongType, StructField, StructType

    assert query.bounds is not None
    columns = [unit, *query.group_by, VALUE_COLUMN]
    flip = pl.lit(_SIGN_BIT, dtype=pl.UInt64)
    row_hash = pl.when(pl.col(_MATCH)).then(
        (pl.struct(columns).hash(_ROW_SEED) ^ flip).reinterpret(signed=True)
    )
    if fixed_point is not None:
        measured = fixed_point_value(query.bounds, fixed_point)
    else:
        low, high = int(query.bounds[0]), int(query.bounds[1])
        measured = pl.col(VALUE_COLUMN).cast(pl.Int64).clip(low, high)
    added = [row_hash.alias(_ROW_HASH), measured.cast(pl.Int64).alias(_MEASURED)]

    def computed(batches: Iterable[pa.RecordBatch]) -> Iterable[pa.RecordBatch]:
        import polars as pl

        for batch in batches:
            frame = pl.from_arrow(batch)
            assert isinstance(frame, pl.DataFrame)
            values = frame.rename({_VALUE: VALUE_COLUMN}).select(added)
            for name in (_ROW_HASH, _MEASURED):
                batch = batch.append_column(name, values.get_column(name).to_arrow())
            yield batch

    extra = [StructField(_ROW_HASH, LongType(), True), StructField(_MEASURED, LongType(), True)]
    return rows.mapInArrow(computed, StructType([*rows.schema.fields, *extra]))


def kept_rows(
    query: ResolvedQuery,
    metadata: DatasetMetadata,
    data: DataFrame,
    groups: DataFrame,
    fixed_point: int | None,
) -> DataFrame:
    """The truncated rows ``T(F(D))`` of a ``sum`` or ``mean``: per (unit, group) kept by
    :func:`kept_groups` (``groups``), its first ``c`` matching rows in the order of
    :mod:`privacy.truncation`'s step 2 (row hash, then value). Columns: the unit, the group
    keys, ``_VALUE`` (the value as read) and ``_MEASURED`` (as summed). The ordering runs
    over every row, whatever the filters match."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    unit = metadata.privacy_unit
    by = list(query.group_by)
    rows = _with_row_values(masked(query, metadata, data), query, unit, fixed_point)
    order = Window.partitionBy(unit, *by).orderBy(
        F.col(_ROW_HASH).asc_nulls_last(), F.col(_VALUE).asc_nulls_last()
    )
    positioned = rows.withColumn(_POSITION, F.row_number().over(order))
    first = positioned.filter(
        F.col(_MATCH) & (F.col(_POSITION) <= query.max_contributions_per_partition)
    )
    keys = groups.filter(_kept(query)).select(unit, *by)
    return first.join(keys, on=[unit, *by], how="inner").select(unit, *by, _VALUE, _MEASURED)


def value_cells(
    query: ResolvedQuery, metadata: DatasetMetadata, kept: DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per public key combination (declared order; 0 where no row is kept): the exact sum
    of the kept rows' measured values and their number, as :func:`public_cells` frames —
    the pre-noise ``sum`` (in fixed-point units for a float column) and the count a
    ``mean`` is released from. ``kept`` is :func:`kept_rows`'s frame."""
    from pyspark.sql import functions as F

    by = list(query.group_by)
    table = (
        kept.groupBy(*by)
        .agg(F.sum(_MEASURED).alias("sum"), F.count(F.lit(1)).alias("rows"))
        .collect()
    )
    sums = {tuple(row[n] for n in by): int(row["sum"] or 0) for row in table}
    counts = {tuple(row[n] for n in by): int(row["rows"] or 0) for row in table}
    return public_cells(query, metadata, sums), public_cells(query, metadata, counts)


def outside_rows(query: ResolvedQuery, kept: DataFrame) -> pl.DataFrame:
    """One row per kept row: :func:`privacy.kept.outside_indicator` of its value (1 if
    outside the clamp bounds), rebuilt from Spark's two counts (the same multiset)."""
    from pyspark.sql import functions as F

    assert query.bounds is not None
    low, high = float(query.bounds[0]), float(query.bounds[1])
    value = F.col(_VALUE).cast("double")
    outside = ((value < F.lit(low)) | (value > F.lit(high))).cast("long").alias("outside")
    counted = kept.groupBy(outside).count().collect()
    return pl.DataFrame(
        {
            OUTSIDE_COLUMN: [int(row["outside"]) for row in counted],
            "rows": [int(row["count"]) for row in counted],
        },
        schema={OUTSIDE_COLUMN: pl.Int64, "rows": pl.Int64},
    ).select(pl.col(OUTSIDE_COLUMN).repeat_by("rows").explode().cast(pl.Int64))


def _released_values(
    plan: Plan, query: ResolvedQuery, sums: pl.DataFrame, counts: pl.DataFrame
) -> pl.DataFrame:
    """A ``sum``'s or ``mean``'s released cells, as the Polars measurement names them:
    OpenDP's integer noise on the exact sums (at the scale in the sum's own units: OpenDP
    reports a fixed-point sum's scale in column units, ``S`` times smaller; S is a power
    of two, so the product is exact) and, for a mean, on the counts."""
    components = {component.aggregate: component for component in plan.components}
    total = components["sum"]
    noisy_sums = noisy_cells(sums, total.distribution, total.scale * (plan.fixed_point or 1))
    if query.statistic == "sum":
        return noisy_sums
    rows = components["count"]
    noisy_counts = noisy_cells(counts, rows.distribution, rows.scale)
    return noisy_sums.rename({VALUE_COLUMN: MEAN_SUM_COLUMN}).with_columns(
        noisy_counts.get_column(VALUE_COLUMN).alias(MEAN_COUNT_COLUMN)
    )


def _kept(query: ResolvedQuery) -> Column:
    from pyspark.sql import functions as F

    return (F.col(_RANK) <= query.max_partitions_contributed) & (F.col(_ROWS) > 0)


def exact_cells(query: ResolvedQuery, metadata: DatasetMetadata, groups: DataFrame) -> pl.DataFrame:
    """The exact pre-noise aggregate of the truncated data, per public key combination
    (declared order; 0 where no unit keeps it): columns ``*group_by, VALUE_COLUMN``
    (Int64). ``groups`` is :func:`kept_groups`'s frame."""
    from pyspark.sql import functions as F

    by = list(query.group_by)
    c = query.max_contributions_per_partition
    contribution = F.when(_kept(query), F.least(F.col(_ROWS), F.lit(c))).otherwise(F.lit(0))
    rows = groups.groupBy(*by).agg(F.sum(contribution).alias(VALUE_COLUMN)).collect()
    values = {tuple(row[name] for name in by): int(row[VALUE_COLUMN] or 0) for row in rows}
    return public_cells(query, metadata, values)


def public_cells(
    query: ResolvedQuery, metadata: DatasetMetadata, values: dict[tuple[Any, ...], int]
) -> pl.DataFrame:
    """``values`` laid out on the public key product (declared order), 0 where absent."""
    import itertools

    from privacy.data import dtype_of

    by = list(query.group_by)
    combinations = list(itertools.product(*(metadata.columns[n].typed_keys() for n in by)))
    columns: dict[str, pl.Series] = {
        name: pl.Series(
            name,
            [combo[i] for combo in combinations],
            dtype=dtype_of(metadata.columns[name].value_type),
        )
        for i, name in enumerate(by)
    }
    columns[VALUE_COLUMN] = pl.Series(
        VALUE_COLUMN, [values.get(combo, 0) for combo in combinations], dtype=pl.Int64
    )
    return pl.DataFrame(columns)


def noisy_cells(exact: pl.DataFrame, distribution: str, scale: float) -> pl.DataFrame:
    """``exact`` with OpenDP's integer noise added to ``VALUE_COLUMN``: ``make_laplace``
    (discrete Laplace) or ``make_gaussian`` (discrete Gaussian) on the vector of cells at
    ``scale``, the distribution and scale OpenDP's ``summarize`` reports for the plan
    (each cell gets independent noise, as OpenDP's Polars measurement adds it)."""
    make = {"Integer Laplace": dp.m.make_laplace, "Integer Gaussian": dp.m.make_gaussian}.get(
        distribution
    )
    if make is None:
        raise InvalidQuery(f"the spark engine cannot add {distribution} noise")
    metric = dp.l1_distance(T="i64") if make is dp.m.make_laplace else dp.l2_distance(T="i64")
    measurement = make(dp.vector_domain(dp.atom_domain(T="i64")), metric, scale=scale)
    values = [int(v) for v in exact.get_column(VALUE_COLUMN).to_list()]
    noisy = measurement(values) if values else []
    return exact.with_columns(pl.Series(VALUE_COLUMN, noisy, dtype=pl.Int64))


def dropped_profile_rows(
    query: ResolvedQuery, groups: DataFrame, unit: str, edges: Sequence[int]
) -> pl.DataFrame:
    """One row per unit (the units of every row of the data): the bin of what the bounds
    dropped from it, as :func:`privacy.kept.dropped_profile` (column ``DROPPED_COLUMN``,
    Int64: the index of the last of the plan's ``edges`` ≤ the dropped amount): per
    (unit, group) the matching rows (``unit_count``: 1 if any) minus the kept ones, summed
    per unit. A per-unit map: OpenDP's histogram over it is then ε-DP at one row per unit
    (see :mod:`privacy.kept`). Spark counts the units per bin; the rows are rebuilt from
    those counts (the same multiset, one small integer per unit)."""
    from pyspark.sql import functions as F

    c = query.max_contributions_per_partition
    kept = F.when(_kept(query), F.least(F.col(_ROWS), F.lit(c))).otherwise(F.lit(0))
    if query.statistic == "unit_count":
        before = (F.col(_ROWS) > 0).cast("long")
        after = (kept > 0).cast("long")
    else:
        before, after = F.col(_ROWS), kept
    per_unit = groups.groupBy(unit).agg(F.sum(before - after).alias("dropped"))
    dropped_bin = F.lit(len(edges) - 1)
    for index in range(len(edges) - 1, 0, -1):
        dropped_bin = F.when(F.col("dropped") < edges[index], F.lit(index - 1)).otherwise(
            dropped_bin
        )
    binned = per_unit.groupBy(dropped_bin.alias(DROPPED_COLUMN)).count().collect()
    return pl.DataFrame(
        {
            DROPPED_COLUMN: [int(row[DROPPED_COLUMN]) for row in binned],
            "units": [int(row["count"]) for row in binned],
        },
        schema={DROPPED_COLUMN: pl.Int64, "units": pl.Int64},
    ).select(pl.col(DROPPED_COLUMN).repeat_by("units").explode().cast(pl.Int64))


def execute_on_spark(plan: Plan, data: DataFrame) -> ReleaseResult:
    """Run ``plan`` once on the Spark frame ``data`` (the dataset's stored columns).

    The same release as :func:`privacy.execute.execute` (see the module docstring): the
    exact truncated aggregate on Spark, OpenDP's noise at the plan's scale, the estimate
    of what the bounds dropped by OpenDP's measurement over Spark's per-unit profile, and
    the same layout and accuracy (post-processing). The OpenDP losses are summed and
    checked against the plan's cost, as there.
    """
    from privacy.execute import (
        _covering,
        _layout,
        _released_total,
        released_accuracy,
        spent_within_cost,
    )

    query, metadata = plan.query, plan.metadata
    assert query is not None and metadata is not None
    check_supported(query, metadata)
    check_plan_supported(plan)
    if query.location is not None:  # one row per unit, at its most frequent key: nothing
        (component,) = plan.components  # is bounded, dropped or estimated (privacy.location)
        exact = location_cells(query, metadata, data)
        rows = _layout(plan, noisy_cells(exact, component.distribution, component.scale))
        assert plan.truncation is None
        losses = [plan.statistic_loss if plan.statistic_loss is not None else plan.opendp_loss]
        return ReleaseResult(
            rows=rows,
            mechanism=plan.mechanism,
            noise_scale=plan.noise_scale,
            accuracy=released_accuracy(plan, rows),
            components=plan.components,
            opendp_loss=float(spent_within_cost(plan, losses)),
        )
    groups = kept_groups(query, metadata, data).cache()
    kept: DataFrame | None = None
    try:
        if query.column is None:  # count, unit_count: from the per-(unit, group) counts
            (component,) = plan.components
            exact = exact_cells(query, metadata, groups)
            released = noisy_cells(exact, component.distribution, component.scale)
        else:  # sum, mean: from the kept rows
            kept = kept_rows(query, metadata, data, groups, plan.fixed_point).cache()
            released = _released_values(plan, query, *value_cells(query, metadata, kept))
        rows = _layout(plan, released)
        accuracy = released_accuracy(plan, rows)
        losses = [plan.statistic_loss if plan.statistic_loss is not None else plan.opendp_loss]
        estimate: TruncationEstimate | None = None
        if plan.truncation is not None:
            estimate = run_truncation(
                plan.truncation,
                query,
                unit=metadata.privacy_unit,
                frame=None,
                truncated=None,
                mask=_MATCH,
                k=query.max_partitions_contributed,
                c=query.max_contributions_per_partition,
                clamp=query.bounds,
                released_total=_released_total(plan, released),
                alpha=accuracy.alpha,
                profile_rows=dropped_profile_rows(
                    query, groups, metadata.privacy_unit, plan.truncation.bins.edges
                ),
                outside_rows=outside_rows(query, kept) if kept is not None else None,
            )
            losses.append(estimate.opendp_loss)
            accuracy = _covering(plan, accuracy, estimate)
    finally:
        groups.unpersist()
        if kept is not None:
            kept.unpersist()
    spent = spent_within_cost(plan, losses)
    return ReleaseResult(
        rows=rows,
        mechanism=plan.mechanism,
        noise_scale=plan.noise_scale,
        accuracy=accuracy,
        components=plan.components,
        opendp_loss=float(spent),
        truncation=estimate,
    )
