"""The Spark engine (``privacy.spark_engine``) against the Polars engine on the same file.

Equality tests compare exact pre-noise aggregates cell by cell (no chance involved). The
noise test states its odds of failing by chance.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from privacy import DatasetMetadata, InvalidQuery, QueryRequest, execute, load_frame, plan_query
from privacy.execute import MATCH_COLUMN, masked_frame, measurement_frame, prepare_frame
from privacy.kept import DroppedBins, dropped_profile, outside_indicator
from privacy.measurement import VALUE_COLUMN, fixed_point_bounds, scale_to_accuracy
from privacy.spark_engine import (
    check_plan_supported,
    check_supported,
    dropped_profile_rows,
    exact_cells,
    execute_on_spark,
    kept_groups,
    kept_rows,
    location_cells,
    noisy_cells,
    outside_rows,
    public_cells,
    value_cells,
)
from privacy.truncation import unit_group_counts
from tests.conftest import require_tool
from tests.factories import MOBILITY_MUNICIPALITIES as MUNICIPALITIES
from tests.factories import make_events, make_metadata

pyspark = pytest.importorskip("pyspark")
pytestmark = [
    pytest.mark.spark,
    pytest.mark.slow,
    # PySpark's collect leaves its local result sockets to the garbage collector
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    require_tool(shutil.which("java") is not None, "Java (for Spark)")
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable  # the executors need pyarrow and Polars
    session = (
        SparkSession.builder.master("local[2]")
        .appName("ruis-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    yield session
    session.stop()


@pytest.fixture(scope="module")
def events() -> pl.DataFrame:
    """Skewed, many days, devices in many municipalities, many ties (1–5 rows per group);
    plus rows Ruis must ignore: a null unit and a municipality that is not a public key."""
    frame = make_events(devices=1_500)
    odd = frame.head(40).with_columns(
        pl.when(pl.int_range(pl.len()) < 20)
        .then(pl.lit(None, dtype=pl.String))
        .otherwise(pl.col("device_id"))
        .alias("device_id"),
        pl.when(pl.int_range(pl.len()) >= 20)
        .then(pl.lit("Atlantis"))
        .otherwise(pl.col("municipality"))
        .alias("municipality"),
    )
    return pl.concat([frame, odd])


@pytest.fixture(scope="module")
def parquet(events: pl.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spark") / "events.parquet"
    events.write_parquet(path, row_group_size=1_000)  # several row groups: several partitions
    return path


@pytest.fixture(scope="module")
def metadata() -> DatasetMetadata:
    return make_metadata()


QUERIES: list[dict[str, Any]] = [
    {"statistic": "unit_count", "group_by": ["municipality"], "max_partitions_contributed": 1},
    {"statistic": "unit_count", "group_by": ["municipality"], "max_partitions_contributed": 3},
    {
        "statistic": "count",
        "group_by": ["municipality"],
        "max_partitions_contributed": 2,
        "max_contributions_per_partition": 2,
    },
    {
        "statistic": "count",
        "group_by": ["municipality", "day"],
        "max_partitions_contributed": 4,
        "max_contributions_per_partition": 1,
    },
    {"statistic": "count", "group_by": [], "max_contributions_per_partition": 3},
    {
        "statistic": "unit_count",
        "group_by": ["day"],
        "max_partitions_contributed": 2,
        "where": [
            {"column": "hour", "op": "between", "value": [6, 18]},
            {"column": "municipality", "op": "in", "value": MUNICIPALITIES[:7]},
        ],
    },
    {
        "statistic": "count",
        "group_by": ["hour"],
        "max_partitions_contributed": 5,
        "max_contributions_per_partition": 2,
        "where": [{"column": "day", "op": "ge", "value": "2026-03-04"}],
    },
]


def request(fields: dict[str, Any]) -> QueryRequest:
    body: dict[str, Any] = {"dataset": "mobility_events", "privacy": {"epsilon": 1}, **fields}
    return QueryRequest.model_validate(body)


def polars_exact(plan: Any, data: pl.LazyFrame) -> pl.DataFrame:
    """The Polars engine's exact pre-noise aggregate: its truncated frame (the one its
    OpenDP measurement reads), counted per public key combination."""
    query, metadata = plan.query, plan.metadata
    truncated = prepare_frame(plan, data).collect()
    by = list(query.group_by)
    if not by:
        return public_cells(query, metadata, {(): truncated.height})
    table = truncated.group_by(by).len()
    return public_cells(query, metadata, {tuple(r[:-1]): r[-1] for r in table.iter_rows()})


@pytest.mark.parametrize("fields", QUERIES)
def test_the_exact_aggregates_before_noise_are_those_of_the_polars_engine(
    spark: Any, parquet: Path, metadata: DatasetMetadata, fields: dict[str, Any]
) -> None:
    plan = plan_query(request(fields), metadata, "pure")
    assert plan.query is not None
    groups = kept_groups(plan.query, metadata, spark.read.parquet(str(parquet)))
    on_spark = exact_cells(plan.query, metadata, groups)
    on_polars = polars_exact(plan, load_frame(parquet, metadata))
    assert on_spark.equals(on_polars), (on_spark, on_polars)
    assert on_spark.get_column(VALUE_COLUMN).sum() > 0


VALUE_QUERIES: list[dict[str, Any]] = [
    {  # a float column: summed in fixed point; some values above the bound are clamped
        "statistic": "sum",
        "column": "dwell_minutes",
        "group_by": ["municipality"],
        "max_partitions_contributed": 2,
        "max_contributions_per_partition": 2,
    },
    {  # an integer column, with a filter on another column
        "statistic": "sum",
        "column": "hour",
        "group_by": ["day"],
        "max_partitions_contributed": 3,
        "max_contributions_per_partition": 3,
        "where": [{"column": "municipality", "op": "in", "value": MUNICIPALITIES[:9]}],
    },
    {"statistic": "sum", "column": "dwell_minutes", "max_contributions_per_partition": 4},
    {
        "statistic": "mean",
        "column": "dwell_minutes",
        "group_by": ["day", "municipality"],
        "max_partitions_contributed": 4,
        "max_contributions_per_partition": 1,
        "where": [{"column": "hour", "op": "ge", "value": 8}],
    },
]


def polars_value_cells(plan: Any, data: pl.LazyFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The Polars engine's exact pre-noise sums (of the values its measurement sums: in
    fixed point for a float column, clipped by OpenDP's ``dp.sum``) and kept-row counts."""
    query, metadata = plan.query, plan.metadata
    truncated = prepare_frame(plan, data).collect()
    measured = measurement_frame(plan, truncated).collect()
    bounds = query.bounds
    if plan.fixed_point is not None:
        bounds = fixed_point_bounds(bounds, plan.fixed_point)
    clipped = pl.col(VALUE_COLUMN).clip(bounds[0], bounds[1])
    by = list(query.group_by)
    if not by:
        total = measured.select(clipped.sum()).item()
        return (
            public_cells(query, metadata, {(): int(total)}),
            public_cells(query, metadata, {(): truncated.height}),
        )
    sums = measured.group_by(by).agg(clipped.sum())
    counts = truncated.group_by(by).len()
    return (
        public_cells(query, metadata, {tuple(r[:-1]): int(r[-1]) for r in sums.iter_rows()}),
        public_cells(query, metadata, {tuple(r[:-1]): r[-1] for r in counts.iter_rows()}),
    )


@pytest.mark.parametrize("fields", VALUE_QUERIES)
def test_the_exact_sums_and_counts_of_values_are_those_of_the_polars_engine(
    spark: Any, parquet: Path, metadata: DatasetMetadata, fields: dict[str, Any]
) -> None:
    plan = plan_query(request(fields), metadata, "pure")
    query = plan.query
    assert query is not None
    assert (plan.fixed_point is not None) == (query.column_type == "float")
    data = spark.read.parquet(str(parquet))
    groups = kept_groups(query, metadata, data)
    kept = kept_rows(query, metadata, data, groups, plan.fixed_point)
    sums, counts = value_cells(query, metadata, kept)
    polars_sums, polars_counts = polars_value_cells(plan, load_frame(parquet, metadata))
    assert sums.equals(polars_sums), (sums, polars_sums)
    assert counts.equals(polars_counts), (counts, polars_counts)
    assert counts.get_column(VALUE_COLUMN).sum() > 0
    truncated = prepare_frame(plan, load_frame(parquet, metadata)).collect()
    on_polars = truncated.select(outside_indicator(query.bounds)).to_series().sort().to_list()
    assert outside_rows(query, kept).to_series().sort().to_list() == on_polars


@pytest.mark.parametrize("fields", QUERIES[:4])
def test_the_dropped_profile_is_that_of_the_polars_engine(
    spark: Any, parquet: Path, metadata: DatasetMetadata, fields: dict[str, Any]
) -> None:
    plan = plan_query(request(fields), metadata, "pure")
    query = plan.query
    assert query is not None and plan.truncation is not None
    edges = plan.truncation.bins.edges
    groups = kept_groups(query, metadata, spark.read.parquet(str(parquet)))
    on_spark = dropped_profile_rows(query, groups, metadata.privacy_unit, edges)
    frame = masked_frame(query, metadata, load_frame(parquet, metadata))
    on_polars = dropped_profile(
        frame,
        prepare_frame(plan, load_frame(parquet, metadata)).collect(),
        unit=metadata.privacy_unit,
        by=list(query.group_by),
        mask=MATCH_COLUMN,
        statistic=query.statistic,
        bins=DroppedBins(edges=edges, most=plan.truncation.bins.most),
        counts=unit_group_counts(
            frame, unit=metadata.privacy_unit, by=list(query.group_by), mask=MATCH_COLUMN
        ),
    ).collect()
    assert sorted(on_spark.to_series().to_list()) == sorted(on_polars.to_series().to_list())
    assert max(on_spark.to_series().to_list()) > 0  # the bounds did drop something here


@pytest.mark.parametrize("fields", [QUERIES[1], QUERIES[2], VALUE_QUERIES[0], VALUE_QUERIES[3]])
def test_both_engines_release_at_the_same_cost_mechanism_and_noise_scale(
    spark: Any, parquet: Path, metadata: DatasetMetadata, fields: dict[str, Any]
) -> None:
    plan = plan_query(request(fields), metadata, "pure")
    on_polars = execute(plan, load_frame(parquet, metadata))
    on_spark = execute_on_spark(plan, spark.read.parquet(str(parquet)))
    assert on_spark.mechanism == on_polars.mechanism
    assert on_spark.noise_scale == on_polars.noise_scale
    assert on_spark.components == on_polars.components
    assert on_spark.opendp_loss == pytest.approx(on_polars.opendp_loss, rel=1e-12)
    assert on_spark.opendp_loss <= float(plan.cost)
    keys = len(fields.get("group_by", []))  # the rows' keys: the same, in the same order
    assert [row[:keys] for row in on_spark.rows] == [row[:keys] for row in on_polars.rows]
    assert len(on_spark.rows[0]) == len(on_polars.rows[0])
    assert on_spark.truncation is not None and on_polars.truncation is not None
    assert on_spark.accuracy.covers == on_polars.accuracy.covers


def test_the_noise_is_opendps_at_the_plans_scale() -> None:
    """100,000 cells at scale 4 (discrete Laplace): the share beyond OpenDP's 95% bound is
    at most 5% (+5σ of a binomial: odds of a false failure < 1e-6), and the sample
    variance is within 4% of 2e^{-1/s}/(1 − e^{-1/s})². Laplace noise has kurtosis 6, so
    the sample variance's relative sd is √(5/n) = 0.71%: 4% is 5.6 sd (odds of a false
    failure below 1e-7; at 20,000 cells and 5% it was 3.2 sd, and failed once in CI)."""
    cells, scale = 100_000, 4.0
    exact = pl.DataFrame({VALUE_COLUMN: np.full(cells, 1_000, dtype=np.int64)})
    noise = noisy_cells(exact, "Integer Laplace", scale).get_column(VALUE_COLUMN).to_numpy() - 1_000
    bound = scale_to_accuracy("Integer Laplace", scale, 0.05)
    assert bound is not None
    beyond = float(np.mean(np.abs(noise) > bound))
    assert beyond <= 0.05 + 5 * math.sqrt(0.05 * 0.95 / cells)
    q = math.exp(-1 / scale)
    assert float(np.var(noise)) == pytest.approx(2 * q / (1 - q) ** 2, rel=0.04)


@pytest.mark.parametrize(
    ("fields", "names"),
    [
        (
            {
                "statistic": "quantile",
                "column": "dwell_minutes",
                "q": 0.5,
                "group_by": ["municipality"],
            },
            "'quantile'",
        ),
        (
            {
                "statistic": "unit_count",
                "group_by": ["municipality"],
                "max_partitions_contributed": "auto",
            },
            "automatic bounds",
        ),
    ],
)
def test_what_the_engine_lacks_is_a_clear_refusal(
    metadata: DatasetMetadata, fields: dict[str, Any], names: str
) -> None:
    plan = plan_query(request(fields), metadata, "pure")
    assert plan.query is not None
    with pytest.raises(InvalidQuery, match=names):
        check_supported(plan.query, metadata)


def test_a_float_sum_under_zcdp_is_refused_an_integer_one_is_not(
    metadata: DatasetMetadata,
) -> None:
    zcdp = {"privacy": {"rho": 0.1}}
    floats = plan_query(
        request({"statistic": "sum", "column": "dwell_minutes", **zcdp}), metadata, "zcdp"
    )
    with pytest.raises(InvalidQuery, match="noise on floats"):
        check_plan_supported(floats)
    integers = plan_query(request({"statistic": "sum", "column": "hour", **zcdp}), metadata, "zcdp")
    check_plan_supported(integers)
    assert integers.components[0].distribution == "Integer Gaussian"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DatasetMetadata]:
    """Demo-shaped events (Zipf municipalities, neighbourhoods in them, devices in several
    places) with their hierarchy, at explicit bounds."""
    from cli import demo_data

    files = demo_data.generate(tmp_path_factory.mktemp("demo"), devices=800, days=4, seed=3)
    registration = demo_data.events_registration(files)
    registration |= {"max_partitions_contributed": 3, "max_contributions_per_partition": 1}
    registration["path"] = str(files.events_path)
    return files.events_path, DatasetMetadata.model_validate(registration)


@pytest.mark.parametrize(
    "fields",
    [
        {"group_by": ["neighbourhood"]},
        {
            "group_by": ["municipality"],
            "where": [{"column": "day", "op": "ge", "value": "2026-03-02"}],
        },
    ],
)
def test_unit_location_counts_are_those_of_the_polars_engine(
    spark: Any, demo: tuple[Path, DatasetMetadata], fields: dict[str, Any]
) -> None:
    """Each device once, at its most frequent neighbourhood (ties to the smallest key), or
    that neighbourhood's municipality: the same cells on both engines, and the release at
    the same cost, mechanism and scale."""
    path, metadata = demo
    location = {"column": "neighbourhood", "rule": "most_frequent"}
    body = {"statistic": "unit_count", "unit_location": location, **fields}
    plan = plan_query(request(body), metadata, "pure")
    assert plan.query is not None and plan.query.location == "neighbourhood"
    check_supported(plan.query, metadata)
    on_spark = location_cells(plan.query, metadata, spark.read.parquet(str(path)))
    on_polars = polars_exact(plan, load_frame(path, metadata))
    assert on_spark.equals(on_polars), (on_spark, on_polars)
    assert 0 < on_spark.get_column(VALUE_COLUMN).sum() <= 800
    released = execute_on_spark(plan, spark.read.parquet(str(path)))
    assert released.noise_scale == execute(plan, load_frame(path, metadata)).noise_scale
    assert [row[0] for row in released.rows] == on_spark.get_column(fields["group_by"][0]).to_list()
