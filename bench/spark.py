"""Q1 on the Spark engine (local mode) next to the Polars engine, in-process.

``python -m bench.spark --size 10M [--master local[2]] [--reps 3] [--statistic sum]``: Q1
(visitors per municipality, ``unit_count`` by ``municipality``, k = 3, ε = 1; with
``--statistic sum`` or ``mean``: of ``dwell_minutes`` in [0, 240], c = 2) planned once by
``plan_query``, then released ``--reps`` times by :func:`privacy.execute.execute` on
Polars and by :func:`privacy.spark_engine.execute_on_spark` on a Spark session started
once (its start-up is printed apart). Prints first and median times per engine, and checks
that both engines' exact pre-noise aggregates are identical on the file.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from bench.data import SIZES, ensure
from bench.queries import Q1
from privacy import DatasetMetadata, QueryRequest, execute, load_frame, plan_query
from privacy.execute import measurement_frame, prepare_frame
from privacy.measurement import VALUE_COLUMN, fixed_point_bounds
from privacy.results import Plan
from privacy.spark_engine import (
    exact_cells,
    execute_on_spark,
    kept_groups,
    kept_rows,
    public_cells,
    value_cells,
)

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

VALUES: dict[str, dict[str, Any]] = {
    statistic: {
        "statistic": statistic,
        "column": "dwell_minutes",
        "bounds": [0, 240],
        "max_contributions_per_partition": 2,
    }
    for statistic in ("sum", "mean")
}
"""``--statistic``: Q1's body for a sum or mean of the dwell time, with explicit bounds."""


def _timed(run: object, reps: int) -> list[float]:
    assert callable(run)
    times: list[float] = []
    for _ in range(reps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison and print its figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.spark")
    parser.add_argument("--size", default="10M", choices=sorted(SIZES))
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--statistic", default="unit_count", choices=["unit_count", *VALUES])
    args = parser.parse_args(argv)
    data = ensure(SIZES[args.size])
    path = data.spec.directory / Q1.file
    registration = data.registration(Q1.dataset)
    registration["path"] = str(path)
    metadata = DatasetMetadata.model_validate(registration)
    body = Q1.body()
    if args.statistic in VALUES:
        body |= VALUES[args.statistic]
    plan = plan_query(QueryRequest.model_validate(body), metadata, "pure")
    assert plan.query is not None

    polars_times = _timed(lambda: execute(plan, load_frame(path, metadata)), args.reps)

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    started = time.perf_counter()
    spark = (
        SparkSession.builder.master(args.master)
        .appName("ruis-bench")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "4g")
        .config("spark.sql.shuffle.partitions", "8")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    startup = time.perf_counter() - started
    spark_times = _timed(lambda: execute_on_spark(plan, spark.read.parquet(str(path))), args.reps)
    identical = _same_exact_aggregates(plan, spark.read.parquet(str(path)), path)
    spark.stop()
    median_polars, median_spark = statistics.median(polars_times), statistics.median(spark_times)
    print(f"Q1 ({args.statistic}) at {args.size} ({data.n_events:,} events), {args.reps} reps")
    print(f"  polars: first {polars_times[0]:.2f} s, median {median_polars:.2f} s")
    print(f"  spark {args.master}: first {spark_times[0]:.2f} s, median {median_spark:.2f} s")
    print(f"  spark session start: {startup:.1f} s")
    print(f"  exact aggregates identical: {identical}")
    return 0 if identical else 1


def _same_exact_aggregates(plan: Plan, frame: DataFrame, path: Path) -> bool:
    """Whether both engines' exact pre-noise aggregates are the same, cell by cell: the
    counts, or the sums as measured (clipped; a float column in fixed point) and kept rows."""
    query, metadata = plan.query, plan.metadata
    assert query is not None and metadata is not None
    by = list(query.group_by)
    groups = kept_groups(query, metadata, frame)
    truncated = prepare_frame(plan, load_frame(path, metadata)).collect()
    counts = truncated.group_by(by).len()
    polars_counts = public_cells(query, metadata, {tuple(r[:-1]): r[-1] for r in counts.rows()})
    if query.column is None:
        return exact_cells(query, metadata, groups).equals(polars_counts)
    assert query.bounds is not None and plan.fixed_point is not None
    low, high = fixed_point_bounds(query.bounds, plan.fixed_point)
    sums = (
        measurement_frame(plan, truncated)
        .collect()
        .group_by(by)
        .agg(pl.col(VALUE_COLUMN).clip(low, high).sum())
    )
    polars_sums = public_cells(query, metadata, {tuple(r[:-1]): r[-1] for r in sums.rows()})
    kept = kept_rows(query, metadata, frame, groups, plan.fixed_point)
    on_spark = value_cells(query, metadata, kept)
    return on_spark[0].equals(polars_sums) and on_spark[1].equals(polars_counts)


if __name__ == "__main__":
    raise SystemExit(main())
