"""Datasets declared ``"engine": "spark"`` over HTTP, on SQLite and PostgreSQL, with a
local Spark: the same file registered twice (Polars and Spark) gives the same exact
aggregate before noise and the same cost, mechanism, noise scale and accuracy; what the
engine lacks is a 422 that spends nothing; directories and URIs under the allowed roots
are read, other paths refused; a changed listing suspends the dataset before any debit.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from api import spark_files
from api.settings import Settings
from db import catalog
from privacy import DatasetMetadata, QueryRequest, load_frame, plan_query
from privacy.spark_engine import (
    exact_cells,
    kept_groups,
    kept_rows,
    location_cells,
    value_cells,
)
from tests.conftest import ADMIN_KEY, Service, require_tool
from tests.factories import events_metadata, write_events
from tests.spark.test_spark_engine import polars_exact, polars_value_cells
from tests.support.api import analyst, ledger
from tests.support.inprocess import start_app

pytest.importorskip("pyspark")
pytestmark = [
    pytest.mark.spark,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]
PROBLEM = "application/problem+json"
DEVICES = 1_500

QUERIES: list[dict[str, Any]] = [
    {"statistic": "count", "group_by": ["municipality"], "privacy": {"epsilon": 0.5}},
    {
        "statistic": "unit_count",
        "group_by": ["day", "municipality"],
        "where": [{"column": "hour", "op": "between", "value": [6, 18]}],
        "privacy": {"epsilon": 0.7},
    },
    {  # accuracy first: the cost is searched for, the same on both engines
        "statistic": "count",
        "group_by": ["day"],
        "privacy": {"max_error": 40, "alpha": 0.05},
    },
    {  # a float column, summed in fixed point
        "statistic": "sum",
        "column": "dwell_minutes",
        "group_by": ["municipality"],
        "max_contributions_per_partition": 2,
        "privacy": {"epsilon": 0.6},
    },
    {
        "statistic": "mean",
        "column": "hour",
        "group_by": ["day"],
        "privacy": {"epsilon": 0.8},
    },
    {  # each device once, at its most frequent municipality
        "statistic": "unit_count",
        "group_by": ["municipality"],
        "unit_location": {"column": "municipality", "rule": "most_frequent"},
        "privacy": {"epsilon": 0.4},
    },
]


@pytest.fixture
def spark_settings(settings: Settings, data_dir: Path) -> Settings:
    require_tool(shutil.which("java") is not None, "Java (for Spark)")
    roots = ((data_dir / "lake").as_uri() + "/",)
    return dataclasses.replace(settings, spark_master="local[2]", spark_data_roots=roots)


@pytest.fixture
def service(spark_settings: Settings) -> Iterator[Service]:
    running = start_app(spark_settings)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def admin(service: Service) -> httpx.Client:
    return service.client(ADMIN_KEY)


def _register(admin: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = admin.post("/v1/datasets", json=body)
    assert response.status_code == 201, response.text
    registered: dict[str, Any] = response.json()
    return registered


def _spent(admin: httpx.Client) -> float:
    return float(sum(b["spent"] for b in admin.get("/v1/budgets").json()["items"]))


def _query(client: httpx.Client, dataset: str, fields: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/queries", json={"dataset": dataset, **fields})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _stored_metadata(service: Service, name: str) -> DatasetMetadata:
    dataset = catalog.get(service.app.state.db, name)
    return DatasetMetadata.model_validate(catalog.metadata_of(dataset))


def test_the_same_file_on_both_engines_gives_the_same_aggregate_cost_and_noise(
    service: Service, admin: httpx.Client, data_dir: Path
) -> None:
    write_events(data_dir, devices=DEVICES)
    _register(admin, events_metadata())
    on_spark = _register(admin, events_metadata(name="events_spark", engine="spark"))
    # the same file: one cap for both views of it, whatever the engine
    assert on_spark["cap_shared_with"] == ["events"]
    assert on_spark["file"]["rows"] == DEVICES * 6
    ana = analyst(service, admin, "ana", amount=20, datasets=("events", "events_spark"))
    polars_meta = _stored_metadata(service, "events")
    spark_meta = _stored_metadata(service, "events_spark")
    assert spark_meta.engine == "spark" and polars_meta.engine == "polars"
    for fields in QUERIES:
        polars_answer = _query(ana, "events", fields)
        spark_answer = _query(ana, "events_spark", fields)
        for key in ("cost", "mechanism", "noise_scale", "columns"):
            assert spark_answer[key] == polars_answer[key], key
        # the noise's share of the error bars is the same; the bias bound is each engine's
        # own DP estimate of what the bounds dropped (independent noise, so it differs)
        noisy = {"error_bound", "bias_bound"}
        spark_accuracy, polars_accuracy = spark_answer["accuracy"], polars_answer["accuracy"]
        assert {k: v for k, v in spark_accuracy.items() if k not in noisy} == {
            k: v for k, v in polars_accuracy.items() if k not in noisy
        }
        assert spark_accuracy.keys() == polars_accuracy.keys()
        keys = len(fields["group_by"])  # a mean's rows end in value, lower, upper
        assert [r[:keys] for r in spark_answer["rows"]] == [r[:keys] for r in polars_answer["rows"]]
        assert spark_answer["rows"] != polars_answer["rows"]  # independent noise
        # the exact aggregates before noise, each engine on its registered files
        query = QueryRequest.model_validate({"dataset": "events", **fields})
        plan = plan_query(query, polars_meta, "pure")
        on_spark_query = query.model_copy(update={"dataset": "events_spark"})
        spark_plan = plan_query(on_spark_query, spark_meta, "pure")
        assert spark_plan.noise_scale == plan.noise_scale and spark_plan.cost == plan.cost
        spark_query = spark_plan.query
        assert spark_query is not None
        frame = spark_files.frame(data_dir, on_spark["file"]["files"])
        groups = kept_groups(spark_query, spark_meta, frame)
        polars_data = load_frame(data_dir / "events.parquet", polars_meta)
        if spark_query.location is not None:
            exact_on_spark = [location_cells(spark_query, spark_meta, frame)]
            exact_on_polars = [polars_exact(plan, polars_data)]
        elif spark_query.column is None:
            exact_on_spark = [exact_cells(spark_query, spark_meta, groups)]
            exact_on_polars = [polars_exact(plan, polars_data)]
        else:  # sum, mean: the sums as measured (fixed point) and the kept rows
            kept = kept_rows(spark_query, spark_meta, frame, groups, spark_plan.fixed_point)
            exact_on_spark = list(value_cells(spark_query, spark_meta, kept))
            exact_on_polars = list(polars_value_cells(plan, polars_data))
        for on_spark_cells, on_polars_cells in zip(exact_on_spark, exact_on_polars, strict=True):
            assert on_spark_cells.equals(on_polars_cells), (on_spark_cells, on_polars_cells)
            assert on_spark_cells.get_column(on_spark_cells.columns[-1]).sum() > 0
    releases = ledger(admin, kind="release")
    costs: dict[str, list[Any]] = {e["dataset"]: [] for e in releases}
    for entry in releases:
        costs[entry["dataset"]].append(entry["cost"])
    assert costs["events"] == costs["events_spark"]
    assert admin.get("/v1/ledger/verify").json()["valid"] is True


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        (
            {"statistic": "quantile", "column": "dwell_minutes", "q": 0.5, "group_by": ["day"]},
            "'quantile'",
        ),
        (
            {"statistic": "count", "group_by": ["day"], "max_partitions_contributed": "auto"},
            "automatic bounds",
        ),
        (
            {
                "statistic": "count",
                "group_by": ["day", "municipality"],
                "contribution_bounds_per": ["day"],
            },
            "contribution_bounds_per",
        ),
    ],
)
def test_what_the_engine_lacks_is_a_422_that_spends_nothing(
    service: Service, admin: httpx.Client, data_dir: Path, fields: dict[str, Any], named: str
) -> None:
    write_events(data_dir, devices=200)
    _register(admin, events_metadata(name="events_spark", engine="spark"))
    ana = analyst(service, admin, "ana", amount=5, datasets=("events_spark",))
    before = len(admin.get("/v1/ledger", params={"limit": 1000}).json()["items"])
    body = {"dataset": "events_spark", "privacy": {"epsilon": 0.5}, **fields}
    for path in ("/v1/queries", "/v1/queries/preview"):
        response = ana.post(path, json=body)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == PROBLEM
        detail = response.json()["detail"]
        assert "spark engine does not support" in detail and named in detail, detail
    assert _spent(admin) == 0
    after = admin.get("/v1/ledger", params={"limit": 1000}).json()["items"][before:]
    assert {e["kind"] for e in after} <= {"refused"}, after  # ledgered, at no cost
    assert not ledger(admin, kind="release")


def _write_parts(directory: Path, frame: pl.DataFrame, parts: int) -> None:
    directory.mkdir(parents=True)
    size = -(-frame.height // parts)
    for index in range(parts):
        frame.slice(index * size, size).write_parquet(directory / f"part-{index:05d}.parquet")
    (directory / "_SUCCESS").write_bytes(b"")  # what Spark writers leave: not data
    (directory / ".part-00000.parquet.crc").write_bytes(b"\x00")


def test_directories_and_uris_under_the_roots_are_read_other_paths_refused(
    service: Service, admin: httpx.Client, data_dir: Path
) -> None:
    source = write_events(data_dir, devices=400)
    frame = pl.read_parquet(source)
    _write_parts(data_dir / "events_dir", frame, 3)
    _write_parts(data_dir / "lake" / "events", frame, 2)
    in_dir = _register(admin, events_metadata(name="in_dir", path="events_dir/", engine="spark"))
    assert in_dir["file"]["rows"] == frame.height
    assert [f["path"] for f in in_dir["file"]["files"]] == [
        f"events_dir/part-{i:05d}.parquet" for i in range(3)
    ]
    uri = (data_dir / "lake" / "events").as_uri()
    in_lake = _register(admin, events_metadata(name="in_lake", path=uri, engine="spark"))
    assert in_lake["file"]["rows"] == frame.height and len(in_lake["file"]["files"]) == 2
    ana = analyst(service, admin, "ana", amount=5, datasets=("in_dir", "in_lake"))
    fields = {"statistic": "count", "group_by": ["municipality"], "privacy": {"epsilon": 1}}
    assert len(_query(ana, "in_dir", fields)["rows"]) == 6
    assert len(_query(ana, "in_lake", fields)["rows"]) == 6
    refused = {
        "outside the roots": (data_dir / "events_dir").as_uri(),
        "a sibling of the root": (data_dir / "lake-other").as_uri(),
        "dot-dot in a URI": (data_dir / "lake").as_uri() + "/../events_dir",
        "dot-dot in a path": "events_dir/../events_dir",
        "absolute path": str(data_dir / "events_dir"),
        "missing directory": "no_such_dir/",
        "a CSV file": "events.csv",
        "a glob in a URI": (data_dir / "lake" / "events").as_uri() + "/part-*.parquet",
        "a glob in a path": "events_dir/part-0000[0-1].parquet",
        "a glob in a file name": "globbed/",
    }
    _write_parts(data_dir / "globbed", frame, 1)
    (data_dir / "globbed" / "part-00000.parquet").rename(data_dir / "globbed" / "p[1].parquet")
    for what, path in refused.items():
        response = admin.post(
            "/v1/datasets", json=events_metadata(name="refused", path=path, engine="spark")
        )
        assert response.status_code == 422, (what, response.text)
        assert response.headers["content-type"] == PROBLEM
        if "glob" in what:  # refused as a pattern, not for another reason
            assert "pattern" in response.json()["detail"], response.text
    polars_dir = admin.post("/v1/datasets", json=events_metadata(name="p", path="events_dir/"))
    assert polars_dir.status_code == 422  # the Polars engine reads one file


def test_a_changed_listing_suspends_the_dataset_before_any_debit(
    service: Service, admin: httpx.Client, data_dir: Path
) -> None:
    source = write_events(data_dir, devices=300)
    _write_parts(data_dir / "events_dir", pl.read_parquet(source), 2)
    _register(admin, events_metadata(name="in_dir", path="events_dir", engine="spark"))
    ana = analyst(service, admin, "ana", amount=5, datasets=("in_dir",))
    fields = {"statistic": "count", "group_by": ["day"], "privacy": {"epsilon": 1}}
    _query(ana, "in_dir", fields)
    spent = _spent(admin)
    shutil.copy(source, data_dir / "events_dir" / "part-00009.parquet")  # one more file
    response = ana.post(
        "/v1/queries", json={"dataset": "in_dir", **fields, "privacy": {"epsilon": 0.5}}
    )
    assert response.status_code == 503 and response.json()["type"] == "dataset-unavailable"
    assert _spent(admin) == spent
    reinstated = admin.post("/v1/datasets/in_dir/reinstate")
    assert reinstated.status_code == 200, reinstated.text
    assert reinstated.json()["file"]["rows"] == 300 * 6 * 2
    _query(ana, "in_dir", {**fields, "privacy": {"epsilon": 0.5}})


def test_an_unreachable_engine_is_a_503_that_spends_nothing(
    service: Service, admin: httpx.Client, spark_settings: Settings, data_dir: Path
) -> None:
    write_events(data_dir, devices=200)
    _register(admin, events_metadata(name="on_spark", engine="spark"))
    ana = analyst(service, admin, "ana", amount=5, datasets=("on_spark",))
    fields = {"statistic": "count", "group_by": ["day"], "privacy": {"epsilon": 1}}
    _query(ana, "on_spark", fields)
    before, spent = ledger(admin), _spent(admin)
    # the same database served by a process whose master Spark cannot start
    broken = start_app(dataclasses.replace(spark_settings, spark_master="nowhere://spark"))
    try:
        broken_admin = broken.client(ADMIN_KEY)
        key = ana.headers["authorization"].removeprefix("Bearer ")
        for request in (
            lambda: broken.client(key).post(
                "/v1/queries", json={"dataset": "on_spark", **fields, "privacy": {"epsilon": 2}}
            ),
            lambda: broken_admin.post(
                "/v1/datasets", json=events_metadata(name="other", engine="spark")
            ),
        ):
            response = request()
            assert response.status_code == 503, response.text
            assert response.headers["content-type"] == PROBLEM
            assert response.json()["type"] == "engine-unavailable"
            assert "Nothing was charged" in response.json()["detail"]
        preview = broken.client(key).post(
            "/v1/queries/preview", json={"dataset": "on_spark", **fields}
        )
        assert preview.status_code == 200, preview.text  # public metadata only: no engine
        assert _spent(broken_admin) == spent
        assert [e["kind"] for e in ledger(admin)[len(before) :]] in ([], ["refused"] * 2)
        polars = broken_admin.post("/v1/datasets", json=events_metadata(name="on_polars"))
        assert polars.status_code == 201, polars.text  # Polars datasets are unaffected
    finally:
        broken.stop()
