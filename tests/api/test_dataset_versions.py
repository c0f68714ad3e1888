"""Dataset versions, retirement and one cap per file (issue 14, SPEC "Open keys and data
over time"): a new version is a new release (charged) while old releases stay readable;
a version that would loosen the metadata changes nothing; a retired dataset answers no
query or preview; datasets over one file share one cap, also under concurrent spending."""

from __future__ import annotations

import json
import shutil
import threading
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from sqlalchemy import text
from sqlmodel import select

from db import accounts, budgets, catalog, dataset_versions, reconcile
from db.amounts import cost_units, total_units
from db.budgets import Debited, Refused
from db.engine import Database
from db.migrate import upgrade
from db.models import Dataset
from tests.conftest import Service
from tests.factories import DAYS, MUNICIPALITIES, events_metadata, write_events
from tests.support.api import VISITORS, analyst, ledger, register_events

PROBLEM = "application/problem+json"
NEW_DAY = "2026-03-05"
DAY_KEYS = [d.isoformat() for d in DAYS]


def _write_next_month(data_dir: Path, name: str = "events_v2.parquet") -> str:
    """The events file with rows on one more day (the same devices come back)."""
    frame = pl.read_parquet(data_dir / "events.parquet")
    more = frame.head(300).with_columns(pl.lit(date.fromisoformat(NEW_DAY)).alias("day"))
    pl.concat([frame, more]).write_parquet(data_dir / name)
    return name


def _query(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/queries", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _state(admin: httpx.Client, name: str = "events") -> tuple[Any, int]:
    verification = admin.get("/v1/ledger/verify").json()
    assert verification["valid"] is True, verification
    return admin.get(f"/v1/datasets/{name}").json(), verification["entries"]


def test_a_new_version_answers_the_same_query_anew(server: Service, admin: httpx.Client) -> None:
    register_events(server, admin)
    ana = analyst(server, admin, amount=2.0)
    first = _query(ana, VISITORS)
    assert first["dataset_version"] == 1 and first["budget_remaining"]["epsilon"] == 1.5
    again = _query(ana, VISITORS)
    assert again["cached"] is True and again["id"] == first["id"]
    assert again["budget_remaining"]["epsilon"] == 1.5

    path = _write_next_month(server.settings.data_dir)
    added = admin.post(
        "/v1/datasets/events/versions",
        json={"path": path, "columns": {"day": {"keys": [*DAY_KEYS, NEW_DAY]}}},
    )
    assert added.status_code == 201, added.text
    shown = added.json()
    assert shown["version"] == 2 and shown["path"] == path
    assert [v["version"] for v in shown["versions"]] == [1, 2]
    assert [v["path"] for v in shown["versions"]] == ["events.parquet", path]
    assert shown["columns"]["day"]["keys"] == [*DAY_KEYS, NEW_DAY]
    assert shown["file"]["rows"] == shown["versions"][1]["rows"] == 300 * 6 + 300
    assert ana.get("/v1/datasets/events").json()["version"] == 2

    second = _query(ana, VISITORS)  # the same query: a new release on version 2, charged
    assert second["cached"] is False and second["id"] != first["id"]
    assert second["dataset_version"] == 2 and second["budget_remaining"]["epsilon"] == 1.0
    assert _query(ana, VISITORS)["id"] == second["id"]  # cached for version 2 now

    reread = ana.get(f"/v1/queries/{first['id']}")
    assert reread.status_code == 200, reread.text
    old = reread.json()
    assert old["dataset_version"] == 1 and old["rows"] == first["rows"]
    listed = ana.get("/v1/queries").json()["items"]
    assert {(r["id"], r["dataset_version"]) for r in listed} == {
        (first["id"], 1),
        (second["id"], 2),
    }
    by_day = _query(ana, {**VISITORS, "group_by": ["day"], "max_partitions_contributed": 5})
    assert [row[0] for row in by_day["rows"]] == [*DAY_KEYS, NEW_DAY]

    versions = ledger(admin, kind="dataset_version_added")
    assert len(versions) == 1 and versions[0]["dataset"] == "events"
    details = versions[0]["details"]
    assert details["version"] == 2 and details["previous"]["version"] == 1
    assert details["file"]["path"] == path
    released = ledger(admin, kind="release")
    assert [e["details"]["dataset_version"] for e in released] == [1, 2, 2]
    verification = admin.get("/v1/ledger/verify").json()
    assert verification["valid"] is True, verification


_LOOSENING = {
    "more categorical keys": {"columns": {"municipality": {"keys": [*MUNICIPALITIES, "GM9999"]}}},
    "fewer date keys": {"columns": {"day": {"keys": DAY_KEYS[:2]}}},
    "date keys that are not dates": {"columns": {"day": {"keys": [*DAY_KEYS, "soon"]}}},
    "wider bounds": {"columns": {"dwell_minutes": {"bounds": [0, 1000]}}},
    "a range on a plain column": {"columns": {"day": {"range": ["2026-03-01", "2026-04-01"]}}},
    "a new column": {"columns": {"operator": {"keys": ["kpn"]}}},
    "another privacy unit": {"privacy_unit": "municipality"},
    "larger contribution bounds": {"max_partitions_contributed": 6},
    "another cap": {"budget_cap": {"model": "pure", "epsilon": 100}},
    "another delta": {"delta": 1e-5},
    "a path outside the data directory": {"path": "../events.parquet"},
    "a missing file": {"path": "nothing.parquet"},
    "fewer rows allowed than the file holds": {"max_rows": 10},
}


@pytest.mark.parametrize("change", sorted(_LOOSENING))
def test_a_loosening_version_is_refused_and_changes_nothing(
    server: Service, admin: httpx.Client, change: str
) -> None:
    register_events(server, admin, budget_cap={"model": "pure", "epsilon": 5})
    path = _write_next_month(server.settings.data_dir)
    before = _state(admin)
    response = admin.post("/v1/datasets/events/versions", json={"path": path, **_LOOSENING[change]})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert _state(admin) == before


def test_a_derived_range_may_grow_and_only_grow(server: Service, admin: httpx.Client) -> None:
    derived = {
        "type": "derived",
        "from": "day",
        "part": "date",
        "range": ["2026-03-01", "2026-03-04"],
    }
    columns = {**events_metadata()["columns"], "on": derived}
    register_events(server, admin, columns=columns)
    path = _write_next_month(server.settings.data_dir)
    before = _state(admin)
    narrower = {
        "on": {"range": ["2026-03-02", "2026-03-05"]},
        "day": {"keys": [*DAY_KEYS, NEW_DAY]},
    }
    response = admin.post("/v1/datasets/events/versions", json={"path": path, "columns": narrower})
    assert response.status_code == 422, response.text
    assert _state(admin) == before
    grown = {"on": {"range": ["2026-03-01", "2026-03-05"]}, "day": {"keys": [*DAY_KEYS, NEW_DAY]}}
    response = admin.post("/v1/datasets/events/versions", json={"path": path, "columns": grown})
    assert response.status_code == 201, response.text
    assert response.json()["columns"]["on"]["range"] == ["2026-03-01", "2026-03-05"]


def test_a_retired_dataset_answers_nothing_new_and_keeps_its_history(
    server: Service, admin: httpx.Client
) -> None:
    register_events(server, admin)
    ana = analyst(server, admin, amount=2.0)
    first = _query(ana, VISITORS)
    retired = admin.post("/v1/datasets/events/retire")
    assert retired.status_code == 200, retired.text
    assert retired.json()["status"] == "retired" and retired.json()["retired_at"]

    for endpoint in ("/v1/queries", "/v1/queries/preview"):
        for body in (VISITORS, {**VISITORS, "privacy": {"epsilon": 0.25}}):  # cached or new
            refused = ana.post(endpoint, json=body)
            assert refused.status_code == 410, refused.text
            assert refused.headers["content-type"] == PROBLEM
            assert refused.json()["type"].endswith("dataset-retired")
    assert ana.get("/v1/budgets").json()["items"][0]["remaining"] == 1.5  # nothing spent
    reread = ana.get(f"/v1/queries/{first['id']}")
    assert reread.status_code == 200 and reread.json()["rows"] == first["rows"]
    assert ana.get("/v1/datasets").json()["items"][0]["status"] == "retired"

    refusals = ledger(admin, kind="refused")  # the queries (previews are not ledgered)
    assert len(refusals) == 2 and {e["details"]["reason"] for e in refusals} == {"dataset_retired"}
    assert all(e["cost"]["epsilon"] == 0 for e in refusals)
    assert [e["dataset"] for e in ledger(admin, kind="dataset_retired")] == ["events"]

    before = _state(admin)
    path = _write_next_month(server.settings.data_dir)
    for method, url, body in (
        ("POST", "/v1/datasets/events/retire", None),
        ("POST", "/v1/datasets/events/versions", {"path": path}),
        ("POST", "/v1/datasets/events/reinstate", None),
        ("PUT", "/v1/budgets/ana/events", {"model": "pure", "epsilon": 3}),
    ):
        response = admin.request(method, url, json=body)
        assert response.status_code == 409, (url, response.text)
    assert _state(admin) == before
    assert admin.get("/v1/ledger/verify").json()["valid"] is True


def test_datasets_over_one_file_share_its_cap(server: Service, admin: httpx.Client) -> None:
    register_events(server, admin, budget_cap={"model": "pure", "epsilon": 1})
    data_dir = server.settings.data_dir
    shutil.copyfile(data_dir / "events.parquet", data_dir / "copy.parquet")
    before = admin.get("/v1/ledger/verify").json()["entries"]
    for other in (
        events_metadata(name="doubled", budget_cap={"model": "pure", "epsilon": 2}),
        events_metadata(name="rho", budget_cap={"model": "zcdp", "rho": 1}),
        events_metadata(
            name="copy", path="copy.parquet", budget_cap={"model": "pure", "epsilon": 2}
        ),
    ):
        refused = admin.post("/v1/datasets", json=other)
        assert refused.status_code == 409, refused.text
        assert "shares that cap" in refused.json()["detail"]
    assert admin.get("/v1/ledger/verify").json()["entries"] == before
    assert [d["name"] for d in admin.get("/v1/datasets").json()["items"]] == ["events"]

    view = admin.post(
        "/v1/datasets", json=events_metadata(name="view", max_partitions_contributed=1)
    )
    assert view.status_code == 201, view.text
    same = admin.post(
        "/v1/datasets",
        json=events_metadata(
            name="same", path="copy.parquet", budget_cap={"model": "pure", "epsilon": 1}
        ),
    )
    assert same.status_code == 201, same.text  # same content, other path: the same people
    assert same.json()["cap_shared_with"] == ["events", "view"]
    ana = analyst(server, admin, "ana", datasets=("events",))
    bob = analyst(server, admin, "bob", datasets=("view",))
    _query(ana, {**VISITORS, "privacy": {"epsilon": 0.75}})
    for name in ("events", "view", "same"):
        assert admin.get(f"/v1/datasets/{name}").json()["budget_cap"] == {
            "model": "pure",
            "epsilon": 1,
            "spent": 0.75,
            "remaining": 0.25,
        }
    visitors = {**VISITORS, "dataset": "view", "max_partitions_contributed": 1}
    preview = bob.post("/v1/queries/preview", json=visitors).json()
    assert preview["fits_budget"] is False and preview["dataset_cap_remaining"]["epsilon"] == 0.25
    refused = bob.post("/v1/queries", json=visitors)
    assert refused.status_code == 409 and "cap" in refused.json()["detail"]
    assert _query(bob, {**visitors, "privacy": {"epsilon": 0.25}})["dataset"] == "view"
    assert admin.get("/v1/datasets/events").json()["budget_cap"]["remaining"] == 0
    assert (
        bob.post("/v1/queries", json={**visitors, "privacy": {"epsilon": 0.1}}).status_code == 409
    )
    verification = admin.get("/v1/ledger/verify").json()
    assert verification["valid"] is True, verification


def test_a_version_over_another_cap_groups_file_is_refused(
    server: Service, admin: httpx.Client
) -> None:
    register_events(server, admin, budget_cap={"model": "pure", "epsilon": 1})
    data_dir = server.settings.data_dir
    write_events(data_dir, seed=8, name="other.parquet")
    other = events_metadata(
        name="other", path="other.parquet", budget_cap={"model": "pure", "epsilon": 1}
    )
    assert admin.post("/v1/datasets", json=other).status_code == 201
    before = _state(admin)
    response = admin.post("/v1/datasets/events/versions", json={"path": "other.parquet"})
    assert response.status_code == 409, response.text
    assert _state(admin) == before


COST = Decimal("0.1")
K = 10  # debits of COST under the file's cap of 1
THREADS = 16


def test_concurrent_spending_on_two_views_never_passes_the_files_cap(db_url: str) -> None:
    database = Database(db_url)
    try:
        upgrade(database)
        for name in ("ana", "bob"):
            accounts.create_consumer(database, name=name, role="analyst", actor="test")
        cap = {"model": "pure", "epsilon": 1.0}
        catalog.register(
            database, metadata={"name": "a", "path": "f.parquet", "budget_cap": cap}, actor="test"
        )
        catalog.register(database, metadata={"name": "b", "path": "./f.parquet"}, actor="test")
        for consumer, dataset in (("ana", "a"), ("bob", "b")):
            budgets.set_budget(
                database,
                consumer=consumer,
                dataset=dataset,
                model="pure",
                amount=Decimal(5),
                actor="test",
            )
        calls = [("ana", "a"), ("bob", "b")] * 20
        outcomes: list[Debited | Refused] = []
        lock = threading.Lock()
        barrier = threading.Barrier(THREADS)

        def worker(mine: list[tuple[str, str]]) -> None:
            barrier.wait()
            for consumer, dataset in mine:
                outcome = budgets.spend(
                    database,
                    consumer=consumer,
                    dataset=dataset,
                    model="pure",
                    cost_units=cost_units(COST),
                    details={},
                )
                with lock:
                    outcomes.append(outcome)

        threads = [
            threading.Thread(target=worker, args=(calls[i::THREADS],)) for i in range(THREADS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        charged = [o for o in outcomes if isinstance(o, Debited)]
        refused = [o for o in outcomes if isinstance(o, Refused)]
        assert len(charged) == K and len(refused) == len(calls) - K
        assert {o.reason for o in refused} == {"dataset_cap"}
        with database.read() as session:
            rows = {d.name: d for d in session.exec(select(Dataset)).all()}
        assert rows["a"].cap_spent_units == total_units(Decimal("1.0"))
        assert rows["b"].cap_dataset_id == rows["a"].id and rows["b"].cap_total_units is None
        chain, found = reconcile.verify(database)
        assert chain.valid and found.reconciled, found.discrepancies
    finally:
        database.dispose()


def test_a_migrated_dataset_is_version_1(db_url: str) -> None:
    database = Database(db_url)
    try:
        upgrade(database, "0006")
        with database.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO datasets (name, metadata_json, cap_spent_units, created_at, "
                    "status) VALUES ('old', :metadata, 0, :created, 'active')"
                ),
                {
                    "metadata": json.dumps({"name": "old", "path": "old.parquet"}),
                    "created": datetime(2026, 3, 1, tzinfo=UTC),
                },
            )
        upgrade(database)
        dataset = catalog.get(database, "old")
        assert dataset.version == 1 and dataset.cap_dataset_id is None
        [version] = dataset_versions.list_versions(database, dataset.id or 0)
        assert version.version == 1 and version.metadata_json == dataset.metadata_json
    finally:
        database.dispose()


def test_the_same_file_again_is_not_a_new_version(server: Service, admin: httpx.Client) -> None:
    """A version whose file and metadata are the current ones (same SHA-256, here under
    another name) would charge the same queries again on the same data: a 409 that
    changes nothing."""
    register_events(server, admin)
    data_dir = server.settings.data_dir
    (data_dir / "again.parquet").write_bytes((data_dir / "events.parquet").read_bytes())
    before = _state(admin)
    response = admin.post("/v1/datasets/events/versions", json={"path": "again.parquet"})
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == PROBLEM
    assert "the same as version 1" in response.json()["detail"]
    assert _state(admin) == before
