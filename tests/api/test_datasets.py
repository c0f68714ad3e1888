"""Dataset registration: metadata shown back, paths confined to the data directory,
declared schema checked against the file, nothing registered or ledgered on refusal."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import polars as pl

from db import budgets
from db.amounts import cost_units
from db.engine import Database
from tests.conftest import Service
from tests.factories import DAYS, MUNICIPALITIES, events_metadata, write_events
from tests.support.api import analyst, register_events

PROBLEM = "application/problem+json"


def _state(admin: httpx.Client) -> tuple[list[str], int]:
    """Registered dataset names and the number of ledger entries."""
    names = [d["name"] for d in admin.get("/v1/datasets").json()["items"]]
    verification = admin.get("/v1/ledger/verify").json()
    assert verification["valid"] is True
    return names, verification["entries"]


def _refused(admin: httpx.Client, body: dict[str, Any], status: int = 422) -> dict[str, Any]:
    before = _state(admin)
    response = admin.post("/v1/datasets", json=body)
    assert response.status_code == status, (body.get("path"), response.text)
    assert response.headers["content-type"] == PROBLEM
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert {"type", "title", "detail"} <= problem.keys()
    assert _state(admin) == before, "a refused registration changed the catalog or ledger"
    return problem


def test_register_shows_metadata_back(server: Service, admin: httpx.Client) -> None:
    write_events(server.settings.data_dir)
    body = events_metadata(budget_cap={"model": "pure", "epsilon": 20})
    response = admin.post("/v1/datasets", json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["name"] == "events" and created["path"] == "events.parquet"
    assert created["privacy_unit"] == "device_id"
    assert created["columns"]["municipality"] == {
        "type": "categorical",
        "keys": MUNICIPALITIES,
        "bounds": None,
    }
    assert created["columns"]["day"]["keys"] == [d.isoformat() for d in DAYS]
    assert created["columns"]["dwell_minutes"]["bounds"] == [0, 240]
    assert created["columns"]["hour"] == {"type": "integer", "keys": None, "bounds": [0, 23]}
    assert created["max_partitions_contributed"] == 3
    assert created["max_contributions_per_partition"] == 1
    assert created["max_rows"] == 100_000
    assert created["delta"] == 1e-9
    assert created["budget_cap"] == {"model": "pure", "epsilon": 20, "spent": 0, "remaining": 20}
    assert "created_at" in created
    assert admin.get("/v1/datasets/events").json() == created
    assert admin.get("/v1/datasets").json() == {"items": [created], "next_cursor": None}
    missing = admin.get("/v1/datasets/nothing")
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
    entries = admin.get("/v1/ledger", params={"kind": "dataset_registered"}).json()["items"]
    assert [(e["dataset"], e["actor"]) for e in entries] == [("events", "bootstrap-admin")]
    assert entries[0]["details"]["metadata"]["columns"]["hour"]["bounds"] == [0, 23]

    write_events(server.settings.data_dir, seed=8, name="zcdp_events.parquet")  # other people
    zcdp = events_metadata(
        name="zcdp_events",
        path="zcdp_events.parquet",
        budget_cap={"model": "zcdp", "rho": 0.25},
        delta=1e-7,
    )
    created = admin.post("/v1/datasets", json=zcdp).json()
    assert created["budget_cap"] == {"model": "zcdp", "rho": 0.25, "spent": 0, "remaining": 0.25}
    assert created["delta"] == 1e-7
    assert [d["name"] for d in admin.get("/v1/datasets").json()["items"]] == [
        "events",
        "zcdp_events",
    ]


def test_budget_cap_shows_what_all_consumers_spent(server: Service, admin: httpx.Client) -> None:
    register_events(server, admin, budget_cap={"model": "pure", "epsilon": 0.3})
    for name in ("ana", "bob"):
        analyst(server, admin, name)
    database = Database(server.settings.database_url)
    try:
        for name in ("ana", "bob", "ana", "bob"):
            budgets.spend(
                database,
                consumer=name,
                dataset="events",
                model="pure",
                cost_units=cost_units(Decimal("0.1")),
                details={},
            )
    finally:
        database.dispose()
    cap = admin.get("/v1/datasets/events").json()["budget_cap"]
    assert cap == {"model": "pure", "epsilon": 0.3, "spent": 0.3, "remaining": 0}


def test_paths_outside_the_data_dir_are_refused(
    server: Service, admin: httpx.Client, tmp_path: Path
) -> None:
    data_dir = server.settings.data_dir
    write_events(data_dir)
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = write_events(outside, name="secret.parquet")
    (data_dir / "escape.parquet").symlink_to(secret)
    (data_dir / "escape_dir").symlink_to(outside, target_is_directory=True)
    (data_dir / "notes.txt").write_text("device_id\n")
    (data_dir / "folder.parquet").mkdir()
    (data_dir / "loop.parquet").symlink_to("loop.parquet")
    for path in (
        "../outside/secret.parquet",
        "/etc/passwd",
        str(secret),
        "escape.parquet",
        "escape_dir/secret.parquet",
        "a//events.parquet",
        "./../outside/secret.parquet",
        "events\x00.parquet",
        "sub\\events.parquet",
        "~/events.parquet",
        "missing.parquet",
        "notes.txt",
        "events.parquet.bak",
        "events",
        "folder.parquet",
        "loop.parquet",
        "events.parquet/x.parquet",
        "x" * 300 + ".parquet",
        "d/" * 400 + "x.parquet",
    ):
        _refused(admin, events_metadata(path=path))
    # Symlinks and subdirectories that stay inside the data directory are fine.
    (data_dir / "sub").mkdir()
    write_events(data_dir / "sub")
    (data_dir / "alias.parquet").symlink_to(Path("sub") / "events.parquet")
    for name, path in (
        ("events", "events.parquet"),
        ("nested", "sub/events.parquet"),
        ("alias", "alias.parquet"),
        ("dotted", "./alias.parquet"),
    ):
        response = admin.post("/v1/datasets", json=events_metadata(name=name, path=path))
        assert response.status_code == 201, (path, response.text)
        assert response.json()["path"] == path


def test_declared_schema_must_match_the_file(server: Service, admin: httpx.Client) -> None:
    data_dir = server.settings.data_dir
    write_events(data_dir)
    (data_dir / "garbage.parquet").write_bytes(b"not a parquet file at all")
    missing_column = events_metadata()
    missing_column["columns"]["region"] = {"type": "categorical", "keys": ["north"]}
    wrong_float = events_metadata()
    wrong_float["columns"]["dwell_minutes"] = {"type": "integer", "bounds": [0, 240]}
    wrong_categorical = events_metadata()
    wrong_categorical["columns"]["hour"] = {"type": "categorical", "keys": ["0", "1"]}
    wrong_date = events_metadata()
    wrong_date["columns"]["municipality"] = {"type": "date", "keys": ["2026-03-01"]}
    wrong_numeric = events_metadata()
    wrong_numeric["columns"]["municipality"] = {"type": "float", "bounds": [0, 1]}
    for body, needle in (
        (missing_column, "region"),
        (wrong_float, "dwell_minutes"),
        (wrong_categorical, "hour"),
        (wrong_date, "municipality"),
        (wrong_numeric, "municipality"),
        (events_metadata(privacy_unit="imei"), "imei"),
        (events_metadata(path="garbage.parquet"), "garbage.parquet"),
    ):
        assert needle in _refused(admin, body)["detail"]
    # The same checks on a CSV file, whose types are inferred from its header and rows.
    pl.read_parquet(data_dir / "events.parquet").write_csv(data_dir / "events.csv")
    wrong_float["path"] = "events.csv"
    assert "dwell_minutes" in _refused(admin, wrong_float)["detail"]
    response = admin.post("/v1/datasets", json=events_metadata(path="events.csv"))
    assert response.status_code == 201, response.text
    assert response.json()["path"] == "events.csv"
    assert response.json()["columns"]["day"]["type"] == "date"


INCONSISTENT_COLUMNS: list[dict[str, Any]] = [
    {"dwell_minutes": {"type": "float", "keys": ["1.5"]}},  # keys on a float column
    {"dwell_minutes": {"type": "float", "bounds": [240, 0]}},  # reversed
    {"dwell_minutes": {"type": "float", "bounds": [5, 5]}},  # empty
    {"dwell_minutes": {"type": "float", "bounds": [0, "Infinity"]}},
    {"dwell_minutes": {"type": "float", "bounds": [0]}},
    {"hour": {"type": "integer", "bounds": [0.5, 23]}},
    {"municipality": {"type": "categorical", "bounds": [0, 1]}},
    {"municipality": {"type": "categorical", "keys": ["GM0014", "GM0034", "GM0014"]}},
    {"municipality": {"type": "categorical", "keys": []}},
    {"day": {"type": "date", "keys": ["2026-03-01", "yesterday"]}},
    {"device_id": {"type": "categorical", "keys": ["d00001"]}},  # the privacy unit
    {"hour": {"type": "timestamp"}},
    {"bad-name": {"type": "integer", "bounds": [0, 1]}},
]


def test_inconsistent_metadata_and_duplicate_names_are_refused(
    server: Service, admin: httpx.Client
) -> None:
    write_events(server.settings.data_dir)
    for columns in INCONSISTENT_COLUMNS:
        body = events_metadata()
        body["columns"] = {**body["columns"], **columns}
        _refused(admin, body)
    _refused(admin, events_metadata(columns={}))
    for override in (
        {"name": "Events"},
        {"name": "1events"},
        {"name": "ev-ents"},
        {"name": "../x"},
        {"name": ""},
        {"name": "e" * 64},
        {"max_partitions_contributed": 0},
        {"max_contributions_per_partition": -1},
        {"delta": 0},
        {"delta": 0.5},
        {"budget_cap": {"model": "pure", "epsilon": 0}},
        {"budget_cap": {"model": "pure", "epsilon": -1}},
        {"budget_cap": {"model": "pure", "epsilon": "NaN"}},
        {"budget_cap": {"model": "pure", "epsilon": 1e7}},
        {"budget_cap": {"model": "zcdp", "epsilon": 1}},
        {"budget_cap": {"model": "approx", "epsilon": 1}},
        {"unexpected": True},
    ):
        _refused(admin, events_metadata(**override))
    assert admin.post("/v1/datasets", json=events_metadata()).status_code == 201
    problem = _refused(admin, events_metadata(max_rows=5), status=409)
    assert problem["type"] == "conflict"
    assert admin.get("/v1/datasets/events").json()["max_rows"] == 100_000
