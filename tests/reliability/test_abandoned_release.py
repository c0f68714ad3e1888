"""A release whose computing process died is not waited for for ever.

``db.releases`` leases a pending release to the request computing it; the owner
renews the lease while it computes. When the lease runs out (the owner is dead),
the next request for the same query fails the release as ``abandoned`` (no refund)
and starts a new one; an owner that was only slow then learns that it lost the
release and releases nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

import api.release
from db import budgets, ledger, releases
from db.amounts import cost_units
from db.budgets import Refused
from db.engine import Database
from db.models import Release
from tests.conftest import Service
from tests.reliability.support import (
    VISITORS,
    ana_with_budget,
    assert_ledger_valid,
    budget_of,
    ledger_entries,
    setup_events,
)

COST = cost_units(Decimal("0.1"))


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    with ana_with_budget(db_url, Decimal("0.25")) as db:
        yield db


def _start(db: Database, query_hash: str = "q" * 64) -> Any:
    return releases.start(
        db,
        consumer_id=1,
        consumer="ana",
        dataset_id=1,
        dataset="events",
        query_hash=query_hash,
        model="pure",
        cost_units=COST,
        details={},
        request_id=None,
    )


def _expire(db: Database, release_id: str) -> None:
    with db.write() as session:
        release = session.get(Release, release_id)
        assert release is not None
        release.lease_expires_at = datetime.now(UTC) - timedelta(seconds=1)
        session.add(release)


def _entries(db: Database, kind: str) -> list[dict[str, Any]]:
    with db.read() as session:
        return [ledger.entry_document(e) for e in ledger.iterate(session) if e.kind == kind]


def test_a_pending_release_past_its_lease_is_failed_and_replaced(database: Database) -> None:
    first = _start(database)
    assert isinstance(first, releases.Started)
    assert releases.renew(database, first.release_id) is True
    # Its owner is alive (lease running): the same query waits for it.
    assert isinstance(_start(database), releases.InFlight)
    _expire(database, first.release_id)
    waited = releases.wait_for(database, first.release_id, timeout=5)
    assert waited is not None and releases.lease_expired(waited)  # no waiting for ever
    second = _start(database)
    assert isinstance(second, releases.Started) and second.release_id != first.release_id
    failed = _entries(database, "release_output")
    assert len(failed) == 1 and failed[0]["actor"] == "system"
    assert failed[0]["details"] == {
        "release_id": first.release_id,
        "release_seq": first.debit.entry.seq,
        "status": "failed",
        "reason": "abandoned",
    }
    # Not refunded: both debits stay spent.
    view = budgets.list_budgets(database, consumer="ana")[0]
    assert view.spent_units == 2 * COST
    # The dead owner, were it only slow, can no longer complete, fail or renew it.
    with pytest.raises(releases.Abandoned):
        releases.complete(
            database,
            release_id=first.release_id,
            body={},
            consumer="ana",
            dataset="events",
            output={},
            request_id=None,
        )
    with pytest.raises(releases.Abandoned):
        releases.fail(
            database,
            release_id=first.release_id,
            consumer="ana",
            dataset="events",
            reason="late",
            request_id=None,
        )
    assert releases.renew(database, first.release_id) is False
    releases.complete(
        database,
        release_id=second.release_id,
        body={"id": second.release_id},
        consumer="ana",
        dataset="events",
        output={"rows": []},
        request_id=None,
    )
    cached = _start(database)
    assert isinstance(cached, releases.Cached) and cached.release_id == second.release_id
    with database.read() as session:
        assert ledger.verify(session).valid


def test_an_abandoned_release_is_failed_even_when_the_new_attempt_is_refused(
    database: Database,
) -> None:
    first = _start(database, "a" * 64)
    second = _start(database, "b" * 64)
    assert isinstance(first, releases.Started) and isinstance(second, releases.Started)
    _expire(database, first.release_id)
    refused = _start(database, "a" * 64)  # 0.05 left: the retry does not fit
    assert isinstance(refused, Refused)
    outputs = _entries(database, "release_output")
    assert [e["details"]["release_id"] for e in outputs] == [first.release_id]
    assert isinstance(_start(database, "b" * 64), releases.InFlight)  # b's owner is alive


def test_keep_alive_renews_the_lease_while_computing(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(releases, "LEASE_SECONDS", 0.5)
    started = _start(database)
    with releases.keep_alive(database, started.release_id, every=0.1):
        time.sleep(1.5)  # three leases long
        assert isinstance(_start(database), releases.InFlight)
    time.sleep(0.7)
    assert not isinstance(_start(database), releases.InFlight)  # no renewal: abandoned


def test_over_http_a_stuck_owner_loses_its_release_and_releases_nothing(
    server: Service, admin: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = setup_events(server, server.settings.data_dir, analysts={"ana": 1.0})
    ana = server.client(keys["ana"])
    real_execute = api.release.execute
    unblock = threading.Event()
    calls: list[int] = []

    def stuck_first(plan: Any, frame: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:  # the first owner hangs, and its lease is never renewed
            assert unblock.wait(timeout=60)
        return real_execute(plan, frame)

    monkeypatch.setattr(api.release, "execute", stuck_first)
    monkeypatch.setattr(releases, "renew", lambda db, release_id: True)
    monkeypatch.setattr(releases, "LEASE_SECONDS", 1.0)
    results: list[httpx.Response] = []
    owner = threading.Thread(target=lambda: results.append(ana.post("/v1/queries", json=VISITORS)))
    owner.start()
    try:
        deadline = time.monotonic() + 30
        while not ledger_entries(admin, kind="release"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        retry = ana.post("/v1/queries", json=VISITORS)  # waits out the lease, then takes over
        assert retry.status_code == 200, retry.text
        assert retry.json()["cached"] is False
    finally:
        unblock.set()
        owner.join(timeout=60)
    lost = results[0]
    assert lost.status_code == 500 and lost.json()["type"] == "release-failed"
    assert "rows" not in lost.text
    released = ledger_entries(admin, kind="release")
    assert len(released) == 2
    abandoned_id = released[0]["details"]["release_id"]
    outputs = ledger_entries(admin, kind="release_output")
    assert [(e["details"]["release_id"], e["details"]["status"]) for e in outputs] == [
        (abandoned_id, "failed"),
        (retry.json()["id"], "done"),
    ]
    assert outputs[0]["details"]["reason"] == "abandoned"
    assert budget_of(admin, "ana")["spent"] == pytest.approx(0.2)
    again = ana.post("/v1/queries", json=VISITORS).json()
    assert again["cached"] is True and again["id"] == retry.json()["id"]
    assert_ledger_valid(admin)
