"""The crowd model over HTTP: a dataset with a timestamp, derived hour and weekday and a
neighbourhood -> municipality hierarchy; residents by unit_location, visitors per
weekday, caching, the ledger, previews and refusals that spend nothing."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl
import pytest

from ruis_client import Ruis
from tests.conftest import Service
from tests.support.api import analyst, create_consumer, set_budget

PROBLEM = "application/problem+json"
MUNICIPALITIES = ["GM0014", "GM0034", "GM0363"]
NEIGHBOURHOODS = [f"WK{m[2:]}{i:02d}" for m in MUNICIPALITIES for i in range(3)]
START = datetime(2026, 3, 2)  # a Monday


def _write(data_dir: Path, devices: int = 200, seed: int = 3) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = devices * 12
    home = rng.integers(0, len(NEIGHBOURHOODS), devices)
    device = rng.integers(0, devices, rows)
    away = rng.random(rows) < 0.3
    nb = np.where(away, rng.integers(0, len(NEIGHBOURHOODS), rows), home[device])
    minutes = rng.integers(0, 14 * 24 * 60, rows)
    frame = pl.DataFrame(
        {
            "device_id": [f"d{i:04d}" for i in device],
            "neighbourhood": [NEIGHBOURHOODS[i] for i in nb],
            "municipality": [NEIGHBOURHOODS[i][:6].replace("WK", "GM") for i in nb],
            "ts": [START + timedelta(minutes=int(m)) for m in minutes],
        },
        schema={
            "device_id": pl.String,
            "neighbourhood": pl.String,
            "municipality": pl.String,
            "ts": pl.Datetime("us"),
        },
    )
    frame.write_parquet(data_dir / "crowd.parquet")
    return frame


def _registration(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "crowd",
        "path": "crowd.parquet",
        "privacy_unit": "device_id",
        "columns": {
            "neighbourhood": {"type": "categorical", "keys": NEIGHBOURHOODS},
            "municipality": {"type": "categorical", "keys": MUNICIPALITIES},
            "ts": {"type": "datetime"},
            "hour": {"type": "derived", "from": "ts", "part": "hour"},
            "weekday": {"type": "derived", "from": "ts", "part": "weekday"},
            "week": {
                "type": "derived",
                "from": "ts",
                "part": "iso_week",
                "range": ["2026-03-02", "2026-03-15"],
            },
        },
        "hierarchy": {
            "neighbourhood": {
                "parent": "municipality",
                "map": {nb: nb[:6].replace("WK", "GM") for nb in NEIGHBOURHOODS},
            }
        },
        "max_partitions_contributed": 3,
        "max_contributions_per_partition": 1,
        "max_rows": 100_000,
    }
    body.update(overrides)
    return body


def _setup(server: Service, admin: httpx.Client) -> tuple[httpx.Client, pl.DataFrame]:
    frame = _write(server.settings.data_dir)
    response = admin.post("/v1/datasets", json=_registration())
    assert response.status_code == 201, response.text
    return analyst(server, admin, amount=20.0, datasets=("crowd",)), frame


RESIDENTS: dict[str, Any] = {
    "dataset": "crowd",
    "statistic": "unit_count",
    "group_by": ["neighbourhood"],
    "unit_location": {"column": "neighbourhood", "rule": "most_frequent"},
    "where": [{"column": "hour", "op": "in", "value": [0, 1, 2, 3, 4, 5, 22, 23]}],
    "privacy": {"epsilon": 1},
}


def test_registration_shows_the_declaration_and_the_hierarchy(
    server: Service, admin: httpx.Client
) -> None:
    _write(server.settings.data_dir)
    created = admin.post("/v1/datasets", json=_registration())
    assert created.status_code == 201, created.text
    shown = admin.get("/v1/datasets/crowd").json()
    assert shown["columns"]["hour"] == {"type": "derived", "from": "ts", "part": "hour"}
    assert shown["columns"]["week"]["range"] == ["2026-03-02", "2026-03-15"]
    assert shown["hierarchy"]["neighbourhood"]["parent"] == "municipality"


def test_a_derived_name_that_the_file_also_has_is_refused(
    server: Service, admin: httpx.Client
) -> None:
    _write(server.settings.data_dir)
    body = _registration()
    body["columns"]["municipality"] = {"type": "derived", "from": "ts", "part": "weekday"}
    del body["hierarchy"]
    response = admin.post("/v1/datasets", json=body)
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM
    assert "name of a column of the file" in response.json()["detail"]


def test_residents_by_night_presence_count_each_device_once(
    server: Service, admin: httpx.Client
) -> None:
    client, frame = _setup(server, admin)
    response = client.post("/v1/queries", json=RESIDENTS)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["columns"] == ["neighbourhood", "value"]
    assert [row[0] for row in body["rows"]] == NEIGHBOURHOODS
    assert body["mechanism"] == "discrete_laplace" and body["noise_scale"] == 1.0
    assert body["accuracy"]["covers"] == "noise_and_bias"
    assert "truncation" not in body or body["truncation"] is None
    night = frame.filter(pl.col("ts").dt.hour().is_in([0, 1, 2, 3, 4, 5, 22, 23]))
    modal = (
        night.group_by("device_id", "neighbourhood")
        .len()
        .sort(["device_id", "len", "neighbourhood"], descending=[False, True, False])
        .unique("device_id", keep="first")
    )
    exact = dict(modal.group_by("neighbourhood").len().iter_rows())
    bound = body["accuracy"]["error_bound"]
    # a 95% bound per cell: all 9 cells miss it together w.p. < 1e-11; 3 or more of 9 miss
    # w.p. < 0.009
    missed = sum(abs(v - exact.get(k, 0)) > bound for k, v in body["rows"])
    assert missed <= 2, (body["rows"], exact, bound)
    again = client.post("/v1/queries", json=RESIDENTS).json()
    assert again["cached"] is True and again["id"] == body["id"]
    entries = admin.get("/v1/ledger", params={"kind": "release"}).json()["items"]
    assert entries[-1]["details"]["query"]["unit_location"] == {
        "column": "neighbourhood",
        "rule": "most_frequent",
    }
    assert admin.get("/v1/ledger/verify").json()["valid"] is True


def test_visitors_per_municipality_per_weekday_and_week(
    server: Service, admin: httpx.Client
) -> None:
    client, _ = _setup(server, admin)
    query = {
        "dataset": "crowd",
        "statistic": "unit_count",
        "group_by": ["municipality", "weekday"],
        "where": [{"column": "week", "op": "eq", "value": "2026-W10"}],
        "max_partitions_contributed": 7,
        "privacy": {"epsilon": 1},
    }
    preview = client.post("/v1/queries/preview", json=query)
    assert preview.status_code == 200, preview.text
    response = client.post("/v1/queries", json=query)
    assert response.status_code == 200, response.text
    rows = response.json()["rows"]
    assert [(r[0], r[1]) for r in rows] == [(m, d) for m in MUNICIPALITIES for d in range(1, 8)]


def test_refusals_spend_nothing(server: Service, admin: httpx.Client) -> None:
    client, _ = _setup(server, admin)
    before = client.get("/v1/budgets").json()["items"][0]["spent"]
    cases = [
        (RESIDENTS | {"statistic": "count"}, "applies to unit_count"),
        (RESIDENTS | {"group_by": ["hour"]}, "group_by must be one of"),
        (RESIDENTS | {"where": [{"column": "hour", "op": "eq", "value": 24}]}, "public keys"),
        (RESIDENTS | {"where": [{"column": "week", "op": "eq", "value": "2026-W20"}]}, "keys"),
        (
            {k: v for k, v in RESIDENTS.items() if k != "unit_location"}
            | {"rollup": ["municipality"]},
            "needs unit_location",
        ),
    ]
    for body, message in cases:
        for path in ("/v1/queries/preview", "/v1/queries"):
            response = client.post(path, json=body)
            assert response.status_code == 422, (body, response.text)
            assert response.headers["content-type"] == PROBLEM
            assert message in response.json()["detail"], response.json()["detail"]
    assert client.get("/v1/budgets").json()["items"][0]["spent"] == before


def _ruis(server: Service, admin: httpx.Client) -> Ruis:
    """The Python client of an analyst with ε = 5 on the crowd dataset."""
    _, _ = _setup(server, admin)
    key = create_consumer(admin, "cleo")
    set_budget(admin, "cleo", "crowd", amount=5.0)
    return Ruis(server.url, key, transport=server.transport)


def test_the_python_client_asks_for_residents(server: Service, admin: httpx.Client) -> None:
    with _ruis(server, admin) as ruis:
        preview = ruis.preview(
            "crowd",
            "unit_count",
            group_by=["municipality"],
            unit_location="neighbourhood",
            epsilon=0.5,
        )
        release = ruis.query(
            "crowd",
            "unit_count",
            group_by=["municipality"],
            unit_location="neighbourhood",
            epsilon=0.5,
        )
    assert preview.columns == ["municipality", "value"]
    assert release.frame.get_column("municipality").to_list() == MUNICIPALITIES
    assert release.noise_scale == 2.0


def test_the_python_client_reads_a_rollup(server: Service, admin: httpx.Client) -> None:
    with _ruis(server, admin) as ruis:
        release = ruis.query(
            "crowd",
            "unit_count",
            group_by=["neighbourhood"],
            unit_location="neighbourhood",
            rollup=["municipality"],
            epsilon=1,
        )
    frame = release.frame
    assert frame.columns == ["level", "municipality", "neighbourhood", "value", "lower", "upper"]
    children = frame.filter(pl.col("level") == "neighbourhood")
    parents = frame.filter(pl.col("level") == "municipality")
    assert parents.get_column("neighbourhood").null_count() == len(MUNICIPALITIES)
    sums = dict(children.group_by("municipality").agg(pl.col("value").sum()).iter_rows())
    assert {
        m: v for m, _, v in parents.select("municipality", "neighbourhood", "value").rows()
    } == sums
    assert [level.level for level in release.accuracy.levels] == [
        "neighbourhood",
        "municipality",
    ]
    for level in release.accuracy.levels:  # each level's rows carry that level's bound
        rows = frame.filter(pl.col("level") == level.level)
        half = ((rows["upper"] - rows["lower"]) / 2).to_list()
        assert half == pytest.approx([level.error_bound] * rows.height)
