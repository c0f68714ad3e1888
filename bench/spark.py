"""Q1 on the Spark engine (local mode) next to the Polars engine, in-process.

``python -m bench.spark --size 10M [--master local[2]] [--reps 3]``: Q1 (visitors per
municipality, ``unit_count`` by ``municipality``, k = 3, ε = 1) planned once by
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

from bench.data import SIZES, ensure
from bench.queries import Q1
from privacy import DatasetMetadata, QueryRequest, execute, load_frame, plan_query
from privacy.execute import prepare_frame
from privacy.spark_engine import exact_cells, execute_on_spark, kept_groups, public_cells


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
    args = parser.parse_args(argv)
    data = ensure(SIZES[args.size])
    path = data.spec.directory / Q1.file
    registration = data.registration(Q1.dataset)
    registration["path"] = str(path)
    metadata = DatasetMetadata.model_validate(registration)
    plan = plan_query(QueryRequest.model_validate(Q1.body()), metadata, "pure")
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
    on_spark = exact_cells(
        plan.query, metadata, kept_groups(plan.query, metadata, spark.read.parquet(str(path)))
    )
    truncated = prepare_frame(plan, load_frame(path, metadata)).collect()
    table = truncated.group_by(list(plan.query.group_by)).len()
    on_polars = public_cells(
        plan.query, metadata, {tuple(r[:-1]): r[-1] for r in table.iter_rows()}
    )
    spark.stop()
    median_polars, median_spark = statistics.median(polars_times), statistics.median(spark_times)
    print(f"Q1 at {args.size} ({data.n_events:,} events), {args.reps} releases each")
    print(f"  polars: first {polars_times[0]:.2f} s, median {median_polars:.2f} s")
    print(f"  spark {args.master}: first {spark_times[0]:.2f} s, median {median_spark:.2f} s")
    print(f"  spark session start: {startup:.1f} s")
    print(f"  exact aggregates identical: {on_spark.equals(on_polars)}")
    return 0 if on_spark.equals(on_polars) else 1


if __name__ == "__main__":
    raise SystemExit(main())
