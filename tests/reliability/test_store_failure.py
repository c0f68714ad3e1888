"""A database failure while storing a computed release loses no values and charges no
second time.

The PostgreSQL connection that stores the release is really killed
(``pg_terminate_backend`` from a separate admin connection, when the statement that
marks the release done is sent), once or on every attempt. The computed values are
spooled first, so the request either stores them on a retry or answers ``503
release-pending`` with the ``release_id``; the sweeper or the client's retry of the
same query then stores them, and the client gets them with ``cached: true`` — one
``release`` entry, one ``release_output`` done, one cost spent.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import event

import api.completion
import api.release
from api.settings import Settings
from api.sweeper import spool_directory, sweep
from db import budgets, ledger, releases
from db.amounts import cost_units
from db.engine import Database
from db.models import Release
from db.spool import Spool, Spooled, attach
from tests.conftest import (
    ADMIN_KEY,
    PG_ADMIN_URL,
    RunningServer,
    Service,
    _pg_database,
    start_server,
)
from tests.reliability.support import (
    VISITORS,
    ana_with_budget,
    assert_ledger_valid,
    budget_of,
    ledger_entries,
    setup_events,
)


class Killer:
    """Kills the PostgreSQL backend that is about to store a release (``times`` times)."""

    def __init__(self, db: Database, *, times: int, marker: str = "body_json") -> None:
        self.times = times
        self.killed: list[int] = []
        self._marker = marker
        self._admin = psycopg.connect(PG_ADMIN_URL, autocommit=True)
        self._lock = threading.Lock()
        self._engine = db.engine
        event.listen(self._engine, "before_cursor_execute", self._before)

    def _before(
        self,
        conn: Any,
        _cursor: Any,
        statement: str,
        _parameters: Any,
        _context: Any,
        _executemany: bool,
    ) -> None:
        if not (
            statement.lstrip().upper().startswith("UPDATE RELEASES") and self._marker in statement
        ):
            return
        with self._lock:
            if len(self.killed) >= self.times:
                return
            pid = conn.connection.dbapi_connection.info.backend_pid
            # Waits (up to 5 s) until the backend is gone: the statement then meets a
            # dead connection, as after a crash or a failover.
            row = self._admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)).fetchone()
            assert row is not None and row[0] is True
            self.killed.append(pid)

    def disarm(self) -> None:
        """Kill no more."""
        with self._lock:
            self.times = len(self.killed)

    def close(self) -> None:
        """Remove the listener and close the admin connection."""
        event.remove(self._engine, "before_cursor_execute", self._before)
        self._admin.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from _pg_database()


@pytest.fixture
def pg_server(pg_url: str, data_dir: Path) -> Iterator[RunningServer]:
    running = start_server(
        Settings(database_url=pg_url, data_dir=data_dir, bootstrap_admin_key=ADMIN_KEY)
    )
    try:
        yield running
    finally:
        running.stop()


def _db(server: Service) -> Database:
    database: Database = server.app.state.db
    return database


def _assert_paid_once(admin: httpx.Client, release_id: str) -> None:
    released = ledger_entries(admin, kind="release")
    assert [e["details"]["release_id"] for e in released] == [release_id]
    outputs = ledger_entries(admin, kind="release_output")
    assert [(e["details"]["release_id"], e["details"]["status"]) for e in outputs] == [
        (release_id, "done")
    ]
    assert budget_of(admin, "ana")["spent"] == pytest.approx(0.1)
    verification = assert_ledger_valid(admin)
    assert verification["reconciled"] is True


@pytest.mark.postgres
def test_a_connection_killed_once_while_storing_is_retried(pg_server: Service) -> None:
    keys = setup_events(pg_server, pg_server.settings.data_dir, analysts={"ana": 1.0})
    ana, admin = pg_server.client(keys["ana"]), pg_server.client(ADMIN_KEY)
    killer = Killer(_db(pg_server), times=1)
    try:
        first = ana.post("/v1/queries", json=VISITORS)
    finally:
        killer.close()
    assert len(killer.killed) == 1
    assert first.status_code == 200, first.text
    assert first.json()["cached"] is False
    again = ana.post("/v1/queries", json=VISITORS)
    assert again.status_code == 200 and again.json()["cached"] is True
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["rows"] == first.json()["rows"]
    _assert_paid_once(admin, first.json()["id"])
    assert list(spool_directory(pg_server.settings).glob("*.json")) == []


@pytest.mark.postgres
def test_connections_killed_on_every_attempt_keep_the_values_for_the_retry(
    pg_server: Service,
) -> None:
    keys = setup_events(pg_server, pg_server.settings.data_dir, analysts={"ana": 1.0})
    ana, admin = pg_server.client(keys["ana"]), pg_server.client(ADMIN_KEY)
    killer = Killer(_db(pg_server), times=10**6)
    try:
        pending = ana.post("/v1/queries", json=VISITORS)
        assert pending.status_code == 503, pending.text
        problem = pending.json()
        assert problem["type"] == "release-pending" and "rows" not in problem
        assert int(pending.headers["Retry-After"]) > 0
        release_id = problem["release_id"]
        # every attempt of the request (and any of the sweeper meanwhile) was killed
        assert len(killer.killed) >= 1 + len(api.completion.COMPLETE_RETRY_DELAYS)
        spooled = json.loads(
            (spool_directory(pg_server.settings) / f"{release_id}.json").read_text()
        )
        assert spooled["body"]["id"] == release_id
    finally:
        killer.disarm()
        killer.close()
    retry = ana.post("/v1/queries", json=VISITORS)  # the sweeper or this request stores it
    assert retry.status_code == 200, retry.text
    body = retry.json()
    assert body["cached"] is True and body["id"] == release_id
    assert body["rows"] == spooled["body"]["rows"]
    assert ana.get(f"/v1/queries/{release_id}").json()["rows"] == body["rows"]
    _assert_paid_once(admin, release_id)
    deadline = time.monotonic() + 10  # the spool file goes once the values are stored
    while list(spool_directory(pg_server.settings).glob("*.json")):
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.postgres
def test_the_sweeper_stores_spooled_values_without_a_retry(pg_server: Service) -> None:
    keys = setup_events(pg_server, pg_server.settings.data_dir, analysts={"ana": 1.0})
    ana, admin = pg_server.client(keys["ana"]), pg_server.client(ADMIN_KEY)
    killer = Killer(_db(pg_server), times=10**6)  # until the request has given up
    try:
        pending = ana.post("/v1/queries", json=VISITORS)
        assert pending.status_code == 503, pending.text
        release_id = pending.json()["release_id"]
        killer.disarm()
        deadline = time.monotonic() + 30
        while not ledger_entries(admin, kind="release_output"):
            assert time.monotonic() < deadline, "the sweeper did not store the release"
            time.sleep(0.1)
    finally:
        killer.close()
    _assert_paid_once(admin, release_id)
    retry = ana.post("/v1/queries", json=VISITORS)
    assert retry.json()["cached"] is True and retry.json()["id"] == release_id


@pytest.mark.postgres
def test_a_restarted_server_stores_what_a_dead_one_spooled(pg_url: str, data_dir: Path) -> None:
    settings = Settings(database_url=pg_url, data_dir=data_dir, bootstrap_admin_key=ADMIN_KEY)
    first = start_server(settings)
    try:
        keys = setup_events(first.url, data_dir, analysts={"ana": 1.0})
        ana = first.client(keys["ana"])
        killer = Killer(_db(first), times=10**6)
        pending = ana.post("/v1/queries", json=VISITORS)
        assert pending.status_code == 503, pending.text
        release_id = pending.json()["release_id"]
    finally:
        first.stop()  # still failing to store when it stops: the file stays
    killer.close()
    assert (spool_directory(settings) / f"{release_id}.json").exists()
    second = start_server(settings)  # its sweeper's first pass stores it
    try:
        admin = second.client(ADMIN_KEY)
        deadline = time.monotonic() + 30
        while not ledger_entries(admin, kind="release_output"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        _assert_paid_once(admin, release_id)
        retry = second.client(keys["ana"]).post("/v1/queries", json=VISITORS)
        assert retry.json()["cached"] is True and retry.json()["id"] == release_id
    finally:
        second.stop()


@pytest.mark.postgres
def test_a_failure_that_cannot_be_ledgered_is_failed_by_the_sweeper(
    pg_server: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = setup_events(pg_server, pg_server.settings.data_dir, analysts={"ana": 1.0})
    ana, admin = pg_server.client(keys["ana"]), pg_server.client(ADMIN_KEY)

    def broken_execute(plan: Any, frame: Any) -> Any:
        raise RuntimeError("the computation failed")

    monkeypatch.setattr(api.release, "execute", broken_execute)
    monkeypatch.setattr(releases, "LEASE_SECONDS", 1.0)
    killer = Killer(_db(pg_server), times=1, marker="status")  # the UPDATE of fail()
    try:
        failed = ana.post("/v1/queries", json=VISITORS)
    finally:
        killer.close()
    assert len(killer.killed) == 1
    assert failed.status_code == 500 and failed.json()["type"] == "release-failed"
    release_id = failed.json()["release_id"]
    deadline = time.monotonic() + 30
    while not ledger_entries(admin, kind="release_output"):
        assert time.monotonic() < deadline, "the sweeper did not fail the release"
        time.sleep(0.1)
    outputs = ledger_entries(admin, kind="release_output")
    assert [
        (e["details"]["release_id"], e["details"]["status"], e["details"]["reason"])
        for e in outputs
    ] == [(release_id, "failed", "abandoned")]
    assert assert_ledger_valid(admin)["reconciled"] is True


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    with ana_with_budget(db_url, Decimal("1")) as db:
        yield db


@pytest.mark.parametrize("how", ["sweeper", "start"])
def test_spooled_values_of_a_dead_process_are_stored_once(
    database: Database, tmp_path: Path, how: str
) -> None:
    spool = Spool(tmp_path / "spool")
    attach(database, spool)

    def start() -> Any:
        return releases.start(
            database,
            consumer_id=1,
            consumer="ana",
            dataset_id=1,
            dataset="events",
            query_hash="q" * 64,
            model="pure",
            cost_units=cost_units(Decimal("0.1")),
            details={},
            request_id=None,
        )

    started = start()
    assert isinstance(started, releases.Started)
    body = {"id": started.release_id, "rows": [{"value": 3}], "cached": False}
    spool.put(
        Spooled(
            release_id=started.release_id,
            consumer="ana",
            dataset="events",
            request_id="r1",
            body=body,
            output={"rows": [{"value": 3}]},
        )
    )
    with database.write() as session:  # the process died: nobody renews its lease
        release = session.get(Release, started.release_id)
        assert release is not None
        release.lease_expires_at = None
        session.add(release)
    if how == "sweeper":
        assert sweep(database, spool) == (1, 0)
        assert sweep(database, spool) == (0, 0)
    served = start()
    assert isinstance(served, releases.Cached) and served.release_id == started.release_id
    assert served.body["rows"] == [{"value": 3}]
    assert list(spool.release_ids()) == []
    with database.read() as session:
        kinds = [
            (e.kind, json.loads(e.details_json).get("status")) for e in ledger.iterate(session)
        ]
    assert kinds.count(("release", None)) == 1
    assert kinds.count(("release_output", "done")) == 1
    assert budgets.list_budgets(database)[0].spent_units == cost_units(Decimal("0.1"))


def test_the_sweeper_fails_an_expired_release_without_values(
    database: Database, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool")
    started = releases.start(
        database,
        consumer_id=1,
        consumer="ana",
        dataset_id=1,
        dataset="events",
        query_hash="q" * 64,
        model="pure",
        cost_units=cost_units(Decimal("0.1")),
        details={},
        request_id=None,
    )
    assert isinstance(started, releases.Started)
    assert sweep(database, spool, grace=0) == (0, 0)  # its lease runs: left alone
    with database.write() as session:
        release = session.get(Release, started.release_id)
        assert release is not None
        release.lease_expires_at = datetime.now(UTC) - timedelta(seconds=1)
        session.add(release)
    assert sweep(database, spool) == (0, 0)  # just past its lease: left to a waiter
    assert sweep(database, spool, grace=0) == (0, 1)
    with database.read() as session:
        outputs = [
            json.loads(e.details_json)
            for e in ledger.iterate(session)
            if e.kind == "release_output"
        ]
    assert outputs == [
        {
            "release_id": started.release_id,
            "release_seq": started.debit.entry.seq,
            "status": "failed",
            "reason": "abandoned",
        }
    ]


_FAULTS = {
    "sqlite": [
        "CREATE TRIGGER refuse_store BEFORE UPDATE OF status ON releases "
        "WHEN NEW.status = 'done' BEGIN SELECT RAISE(ABORT, 'storage failed'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_store() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'storage failed'; END $$",
        "CREATE TRIGGER refuse_store BEFORE UPDATE OF status ON releases FOR EACH ROW "
        "WHEN (NEW.status = 'done') EXECUTE FUNCTION refuse_store()",
    ],
}


def test_a_database_refusing_to_store_keeps_the_values_on_each_backend(
    server: Service, admin: httpx.Client
) -> None:
    """The database itself refuses the store (a trigger stands in for a full disk or a
    read-only failover target) until the fault is removed."""
    keys = setup_events(server, server.settings.data_dir, analysts={"ana": 1.0})
    ana = server.client(keys["ana"])
    db = _db(server)
    with db.engine.begin() as conn:
        for statement in _FAULTS[db.dialect]:
            conn.exec_driver_sql(statement)
    try:
        pending = ana.post("/v1/queries", json=VISITORS)
    finally:
        with db.engine.begin() as conn:
            conn.exec_driver_sql(
                "DROP TRIGGER refuse_store" + (" ON releases" if db.dialect == "postgresql" else "")
            )
    assert pending.status_code == 503, pending.text
    assert pending.json()["type"] == "release-pending"
    release_id = pending.json()["release_id"]
    retry = ana.post("/v1/queries", json=VISITORS)
    assert retry.status_code == 200, retry.text
    assert retry.json()["cached"] is True and retry.json()["id"] == release_id
    _assert_paid_once(admin, release_id)
