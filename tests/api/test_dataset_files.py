"""Data files checked before any debit: max_rows and strict CSV at registration, a cheap
fingerprint check before each release; a changed or broken file suspends the dataset
(503 dataset-unavailable for everyone, nothing charged) until an admin reinstates it."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from api.settings import Settings
from db import catalog
from db.engine import Database
from tests.conftest import ADMIN_KEY, Service
from tests.factories import events_metadata, write_events
from tests.support.api import VISITORS, analyst, ledger
from tests.support.inprocess import InProcessApp, start_app

PROBLEM = "application/problem+json"
ROWS = 300 * 6  # write_events' default row count
SECRET = "SECRET-VALUE-42"  # a data value that must never appear in a message


def _state(admin: httpx.Client) -> tuple[list[str], int]:
    names = [d["name"] for d in admin.get("/v1/datasets").json()["items"]]
    verification = admin.get("/v1/ledger/verify").json()
    assert verification["valid"] is True
    return names, verification["entries"]


def _refused(admin: httpx.Client, body: dict[str, Any]) -> str:
    """Register ``body``: a 422 problem that stores and ledgers nothing; its detail."""
    before = _state(admin)
    response = admin.post("/v1/datasets", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert _state(admin) == before
    detail: str = response.json()["detail"]
    assert SECRET not in detail
    return detail


def _analyst(
    server: Service,
    admin: httpx.Client,
    name: str = "ana",
    datasets: tuple[str, ...] = ("events",),
    epsilon: float = 5,
) -> httpx.Client:
    return analyst(server, admin, name, amount=epsilon, datasets=datasets)


def _spent(admin: httpx.Client) -> float:
    return float(sum(b["spent"] for b in admin.get("/v1/budgets").json()["items"]))


def _unavailable(client: httpx.Client, query: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/queries", json=query)
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == PROBLEM
    problem: dict[str, Any] = response.json()
    assert problem["type"] == "dataset-unavailable" and problem["status"] == 503
    assert "release_id" not in problem
    return problem


def _charged(admin: httpx.Client, *, spent: float, releases: int) -> None:
    """What was spent in all and how many releases were ledgered (nothing more)."""
    assert _spent(admin) == pytest.approx(spent)
    assert len(ledger(admin, kind="release")) == releases
    assert admin.get("/v1/ledger/verify").json()["valid"] is True


def _replace(path: Path, frame: pl.DataFrame) -> None:
    """Replace ``path`` as a careless operator would: a new file renamed over it."""
    temporary = path.with_name(path.name + ".new")
    frame.write_parquet(temporary)
    os.replace(temporary, path)


def test_more_rows_than_max_rows_refused_at_registration_then_suspends_when_swapped_in(
    server: Service, admin: httpx.Client
) -> None:
    data_dir = server.settings.data_dir
    write_events(data_dir)
    detail = _refused(admin, events_metadata(max_rows=ROWS - 1))
    assert "max_rows" in detail and str(ROWS) not in detail  # the limit, not the count
    created = admin.post("/v1/datasets", json=events_metadata(max_rows=ROWS))
    assert created.status_code == 201, created.text
    fingerprint = created.json()["file"]
    assert fingerprint["path"] == "events.parquet" and fingerprint["rows"] == ROWS
    assert len(fingerprint["sha256"]) == 64 and fingerprint["source"] is None
    assert created.json()["status"] == "active"
    ana = _analyst(server, admin)
    bob = _analyst(server, admin, "bob")
    assert ana.post("/v1/queries", json=VISITORS).status_code == 200

    write_events(data_dir, devices=301)  # six more rows than max_rows declares
    problem = _unavailable(ana, {**VISITORS, "privacy": {"epsilon": 0.25}})
    assert str(ROWS + 6) not in problem["detail"]
    # The same answer for every consumer and every later query, cached ones included.
    assert _unavailable(bob, VISITORS) == problem
    assert _unavailable(ana, VISITORS) == problem
    preview = ana.post("/v1/queries/preview", json=VISITORS)
    assert preview.status_code == 503 and preview.json()["type"] == "dataset-unavailable"
    _charged(admin, spent=0.5, releases=1)
    suspended = ledger(admin, kind="dataset_suspended")
    assert len(suspended) == 1  # ledgered once
    assert suspended[0]["details"]["reason"] == "max_rows_exceeded"
    assert suspended[0]["details"]["observed"]["rows"] == ROWS + 6
    refused = ledger(admin, kind="refused")
    assert [r["details"]["reason"] for r in refused] == ["dataset_unavailable"] * 3
    assert {r["consumer"] for r in refused} == {"ana", "bob"}
    assert all(r["cost"] == {"model": "pure", "epsilon": 0} for r in refused)

    shown = admin.get("/v1/datasets/events").json()
    assert shown["status"] == "suspended" and shown["suspended_reason"] == "max_rows_exceeded"
    seen = ana.get("/v1/datasets/events").json()  # analysts: the status, not the reason
    assert seen["status"] == "suspended"
    assert seen["suspended_reason"] is None and seen["file"] is None
    ready = server.client().get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
    assert ready.json()["checks"]["datasets"] == "1 suspended"
    assert "events" not in ready.text

    # Reinstating re-runs the registration check: still too many rows → 422, still suspended.
    assert "max_rows" in admin.post("/v1/datasets/events/reinstate").json()["detail"]
    assert admin.get("/v1/datasets/events").json()["status"] == "suspended"
    _unavailable(ana, VISITORS)
    write_events(data_dir)
    reinstated = admin.post("/v1/datasets/events/reinstate")
    assert reinstated.status_code == 200, reinstated.text
    assert reinstated.json()["status"] == "active"
    assert reinstated.json()["suspended_reason"] is None
    assert ana.post("/v1/queries", json=VISITORS).status_code == 200
    assert server.client().get("/readyz").json() == {
        "status": "ok",
        "checks": {**ready.json()["checks"], "datasets": "ok"},
    }


def _csv(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


CSV_HEADER = "device_id,municipality,day,dwell_minutes,hour"
CSV_ROWS = [
    "d1,GM0014,2026-03-01,10.5,3",
    "d2,GM0034,2026-03-02,20,4",
    "d3,GM0363,2026-03-03,30.25,5",
]


def _csv_metadata(**overrides: Any) -> dict[str, Any]:
    return events_metadata(path="events.csv", **overrides)


@pytest.mark.parametrize(
    ("rows", "needles"),
    [
        ([*CSV_ROWS[:2], f"d3,{SECRET},2026-03-03"], ["line 4", "expected 5 fields, found 3"]),
        ([*CSV_ROWS[:2], f"d3,GM0363,2026-03-03,30,4,{SECRET}"], ["line 4", "found 6"]),
        (
            [CSV_ROWS[0], f"d2,GM0034,2026-03-02,20,{SECRET}", CSV_ROWS[2]],
            ["'hour'", "row 2 (line 3)", "integer"],
        ),
        ([CSV_ROWS[0], "d2,GM0034,2026-03-02,20,9223372036854775808"], ["'hour'", "row 2"]),
        ([CSV_ROWS[0], f"d2,GM0034,{SECRET},20,4"], ["'day'", "row 2", "date"]),
        (
            [f'd1,"GM{SECRET}\nmore",2026-03-01,{SECRET},3', CSV_ROWS[1]],
            ["'dwell_minutes'", "row 1 (line 3)", "number"],
        ),
        ([CSV_ROWS[0], f'd2,"GM0034{SECRET},2026-03-02,20,4'], ["line"]),
        ([CSV_ROWS[0], "", CSV_ROWS[1]], ["line 3", "blank"]),
        (CSV_ROWS * 2, ["max_rows (5)"]),
    ],
    ids=[
        "short-row",
        "long-row",
        "bad-integer",
        "integer-overflow",
        "bad-date",
        "multiline-bad-float",
        "unclosed-quote",
        "blank-line",
        "max-rows",
    ],
)
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_malformed_csv_refused_at_registration(
    server: Service, admin: httpx.Client, rows: list[str], needles: list[str]
) -> None:
    _csv(server.settings.data_dir / "events.csv", [CSV_HEADER, *rows])
    detail = _refused(admin, _csv_metadata(max_rows=5))
    for needle in needles:
        assert needle in detail, detail
    assert not (server.settings.data_dir / ".ruis" / "converted").exists() or not any(
        p.suffix == ".parquet" for p in (server.settings.data_dir / ".ruis" / "converted").iterdir()
    )


def test_csv_is_converted_once_and_a_malformed_swap_suspends(
    server: Service, admin: httpx.Client
) -> None:
    data_dir = server.settings.data_dir
    write_events(data_dir)
    pl.read_parquet(data_dir / "events.parquet").write_csv(data_dir / "events.csv")
    (data_dir / "not-utf8.csv").write_bytes(CSV_HEADER.encode() + b"\nd1,GM\xff,2026-03-01,1,2\n")
    assert "UTF-8" in _refused(admin, events_metadata(name="latin", path="not-utf8.csv"))
    created = admin.post("/v1/datasets", json=_csv_metadata())
    assert created.status_code == 201, created.text
    fingerprint = created.json()["file"]
    assert fingerprint["path"].startswith(".ruis/converted/")
    assert fingerprint["path"].endswith(".parquet") and fingerprint["rows"] == ROWS
    assert fingerprint["source"]["path"] == "events.csv"
    assert fingerprint["source"]["sha256"] in fingerprint["path"]  # named by its content
    converted = pl.read_parquet(data_dir / fingerprint["path"])
    assert converted.columns == ["device_id", "municipality", "day", "dwell_minutes", "hour"]
    assert converted.schema["day"] == pl.Date and converted.schema["hour"] == pl.Int64
    ana = _analyst(server, admin)
    assert ana.post("/v1/queries", json=VISITORS).status_code == 200

    # Queries read the Parquet file, never the CSV again: with the CSV's bytes made
    # garbage (size and time kept, which the cheap check compares) a new query still runs.
    source = data_dir / "events.csv"
    original, stat = source.read_bytes(), source.stat()
    source.write_bytes(b"x" * len(original))
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = ana.post("/v1/queries", json={**VISITORS, "privacy": {"epsilon": 0.25}})
    assert second.status_code == 200, second.text
    source.write_bytes(original)
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    _charged(admin, spent=0.75, releases=2)

    lines = (data_dir / "events.csv").read_text().splitlines()
    _csv(data_dir / "events.csv", [*lines, f"d9,{SECRET}"])  # a malformed row appended
    problem = _unavailable(ana, {**VISITORS, "privacy": {"epsilon": 0.125}})
    assert SECRET not in problem["detail"]
    _charged(admin, spent=0.75, releases=2)
    assert admin.get("/v1/datasets/events").json()["suspended_reason"] == "source_changed"
    detail = admin.post("/v1/datasets/events/reinstate").json()["detail"]
    assert f"line {len(lines) + 1}" in detail and SECRET not in detail


def test_renamed_column_deleted_file_and_changed_type_cost_nothing(
    server: Service, admin: httpx.Client
) -> None:
    data_dir = server.settings.data_dir
    names = ("renamed", "deleted", "retyped", "converted")
    for name in names:
        write_events(data_dir, name=f"{name}.parquet")
        response = admin.post(
            "/v1/datasets", json=events_metadata(name=name, path=f"{name}.parquet")
        )
        assert response.status_code == 201, response.text
    ana = _analyst(server, admin, datasets=names)
    frame = pl.read_parquet(data_dir / "renamed.parquet")
    _replace(data_dir / "renamed.parquet", frame.rename({"municipality": "gemeente"}))
    (data_dir / "deleted.parquet").unlink()
    _replace(data_dir / "retyped.parquet", frame.with_columns(pl.col("hour").cast(pl.String)))
    # A compatible type change (the declared check passes) is still a different file.
    _replace(data_dir / "converted.parquet", frame.with_columns(pl.col("hour").cast(pl.Int32)))
    for name in names:
        _unavailable(ana, {**VISITORS, "dataset": name})
        _unavailable(ana, {**VISITORS, "dataset": name})
    _charged(admin, spent=0, releases=0)
    reasons = {
        e["dataset"]: e["details"]["reason"] for e in ledger(admin, kind="dataset_suspended")
    }
    assert reasons == {
        "renamed": "schema_changed",
        "deleted": "file_missing",
        "retyped": "schema_changed",
        "converted": "schema_changed",
    }
    assert server.client().get("/readyz").json()["checks"]["datasets"] == "4 suspended"
    missing = admin.post("/v1/datasets/deleted/reinstate")
    assert missing.status_code == 422 and "deleted.parquet" in missing.json()["detail"]


def test_file_replaced_in_place_is_suspended_and_never_answered_from_cache(
    server: Service, admin: httpx.Client
) -> None:
    data_dir = server.settings.data_dir
    write_events(data_dir)
    assert admin.post("/v1/datasets", json=events_metadata()).status_code == 201
    ana = _analyst(server, admin)
    first = ana.post("/v1/queries", json=VISITORS).json()
    assert ana.post("/v1/queries", json=VISITORS).json()["cached"] is True
    old = admin.get("/v1/datasets/events").json()["file"]

    stat = (data_dir / "events.parquet").stat()
    write_events(data_dir, seed=8)  # same schema and row count, other contents
    os.utime(data_dir / "events.parquet", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    _unavailable(ana, VISITORS)  # the cached answer is not served either
    assert admin.get("/v1/datasets/events").json()["suspended_reason"] == "file_changed"
    _charged(admin, spent=0.5, releases=1)

    analyst_try = ana.post("/v1/datasets/events/reinstate")
    assert analyst_try.status_code == 403
    auditor = admin.post("/v1/consumers", json={"name": "olga", "role": "auditor"}).json()
    assert (
        server.client(auditor["api_key"]).post("/v1/datasets/events/reinstate").status_code == 403
    )
    assert admin.post("/v1/datasets/nothing/reinstate").status_code == 404
    reinstated = admin.post("/v1/datasets/events/reinstate").json()
    new = reinstated["file"]
    assert new["sha256"] != old["sha256"] and new["rows"] == old["rows"]
    entry = ledger(admin, kind="dataset_reinstated")[-1]
    assert entry["actor"] == "bootstrap-admin"
    assert entry["details"]["previous"] == {
        "status": "suspended",
        "suspended_reason": "file_changed",
        "file": old,
    }
    assert entry["details"]["file"] == new

    again = ana.post("/v1/queries", json=VISITORS).json()
    assert again["cached"] is False and again["id"] != first["id"]  # charged anew
    assert again["budget_remaining"] == {"epsilon": 4.0}
    released = ledger(admin, kind="release")
    assert [e["details"]["file_sha256"] for e in released] == [old["sha256"], new["sha256"]]
    stored = ana.get(f"/v1/queries/{first['id']}").json()  # old releases stay readable
    assert stored["rows"] == first["rows"] and stored["cached"] is True


def test_a_dataset_registered_before_fingerprints_gets_one_at_its_first_release(
    server: Service, admin: httpx.Client
) -> None:
    write_events(server.settings.data_dir)
    metadata = events_metadata()
    database = Database(server.settings.database_url)
    try:  # as a dataset registered before migration 0003 is stored: no fingerprint
        catalog.register(database, metadata={**metadata, "delta": 1e-9}, actor="old")
    finally:
        database.dispose()
    assert admin.get("/v1/datasets/events").json()["file"] is None
    ana = _analyst(server, admin)
    assert ana.post("/v1/queries", json=VISITORS).status_code == 200
    recorded = ledger(admin, kind="dataset_fingerprinted")
    assert len(recorded) == 1 and recorded[0]["details"]["file"]["rows"] == ROWS
    assert admin.get("/v1/datasets/events").json()["file"] == recorded[0]["details"]["file"]
    assert ana.post("/v1/queries", json=VISITORS).json()["cached"] is True
    assert len(ledger(admin, kind="dataset_fingerprinted")) == 1


@pytest.fixture
def full_disk(settings: Settings) -> Iterator[InProcessApp]:
    """The app with a free-space threshold no disk meets (a full disk, as readyz sees it)."""
    running = start_app(dataclasses.replace(settings, min_free_bytes=2**62))
    try:
        yield running
    finally:
        running.stop()


def test_readyz_fails_when_the_disk_is_full(full_disk: InProcessApp) -> None:
    response = full_disk.client().get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["data_dir"] == "low on space"
    if full_disk.settings.database_url.startswith("sqlite"):
        assert checks["database_dir"] == "low on space"
    assert checks["database"] == "ok" and checks["datasets"] == "ok"
    assert full_disk.client().get("/healthz").status_code == 200
    admin = full_disk.client(ADMIN_KEY)
    assert admin.get("/v1/datasets").status_code == 200  # still answering, just not ready


def test_a_file_changed_while_a_release_is_computed_is_not_released(
    server: Service, admin: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    import api.release

    data_dir = server.settings.data_dir
    write_events(data_dir)
    assert admin.post("/v1/datasets", json=events_metadata()).status_code == 201
    ana = _analyst(server, admin)
    real_execute = api.release.execute

    def swapped_meanwhile(plan: Any, frame: Any) -> Any:
        result = real_execute(plan, frame)
        write_events(data_dir, seed=9)  # the operator replaces the file mid-release
        return result

    monkeypatch.setattr(api.release, "execute", swapped_meanwhile)
    lost = ana.post("/v1/queries", json=VISITORS)
    assert lost.status_code == 500 and lost.json()["type"] == "release-failed"
    assert "rows" not in lost.text and lost.json()["release_id"]
    outputs = ledger(admin, kind="release_output")
    assert [e["details"]["status"] for e in outputs] == ["failed"]  # values not released
    assert admin.get("/v1/datasets/events").json()["suspended_reason"] == "file_changed"
    _charged(admin, spent=0.5, releases=1)  # debited before the read: not refunded
    _unavailable(ana, VISITORS)
