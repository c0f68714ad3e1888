"""``GET /v1/ledger/verify`` reconciles the tables with the ledger: an insider who resets
what a budget or a cap has spent, raises a total or deletes a release breaks no hash, and
is still reported."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text

import api.release
from db import reconcile
from db.reconcile import ledgered_units
from tests.conftest import Service
from tests.reliability.support import distinct_queries, setup_events


@pytest.fixture
def engine(server: Service) -> Iterator[Engine]:
    """A plain engine on the server's database, for tampering with it."""
    opened = create_engine(server.settings.database_url)
    yield opened
    opened.dispose()


def _verify(admin: httpx.Client) -> dict[str, Any]:
    response = admin.get("/v1/ledger/verify")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _execute(engine: Engine, sql: str, **params: Any) -> None:
    with engine.begin() as conn:
        assert conn.execute(text(sql), params).rowcount >= 1


def _scalar(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


def _populate(server: Service, monkeypatch: pytest.MonkeyPatch) -> dict[str, httpx.Client]:
    """Two analysts on a capped dataset, releases, a re-read, a refusal and a failed
    release retried (its row replaced)."""
    keys = setup_events(
        server, server.settings.data_dir, analysts={"ana": 1.0, "bob": 0.35}, cap=5.0
    )
    ana, bob = server.client(keys["ana"]), server.client(keys["bob"])
    queries = distinct_queries(4, epsilon=0.1)
    for body in queries[:3]:
        assert ana.post("/v1/queries", json=body).status_code == 200
    assert ana.post("/v1/queries", json=queries[0]).json()["cached"] is True
    real_execute = api.release.execute
    calls: list[int] = []

    def fail_once(plan: Any, frame: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a failure after the debit")
        return real_execute(plan, frame)

    monkeypatch.setattr(api.release, "execute", fail_once)
    assert bob.post("/v1/queries", json=queries[3]).status_code == 500
    assert bob.post("/v1/queries", json=queries[3]).status_code == 200  # replaces the row
    monkeypatch.setattr(api.release, "execute", real_execute)
    assert (
        bob.post("/v1/queries", json={**queries[0], "privacy": {"epsilon": 0.3}}).status_code == 409
    )
    return {"ana": ana, "bob": bob}


def _kinds(result: dict[str, Any]) -> list[tuple[Any, ...]]:
    return sorted((d["kind"], d.get("consumer"), d.get("dataset")) for d in result["discrepancies"])


def test_verify_reports_tampered_budgets_caps_and_releases(
    server: Service, admin: httpx.Client, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _populate(server, monkeypatch)
    clean = _verify(admin)
    assert clean["valid"] is True and clean["chain_valid"] is True, clean
    assert clean["reconciled"] is True and clean["discrepancies"] == []
    assert clean["first_bad_seq"] is None and clean["head"] is not None

    ana_id = _scalar(engine, "SELECT id FROM consumers WHERE name = 'ana'")
    spent = _scalar(engine, "SELECT spent_units FROM budgets WHERE consumer_id = :c", c=ana_id)
    assert spent == 3 * 10**11
    # (a) what ana spent reset in the database: the attack that overspent a grant
    _execute(engine, "UPDATE budgets SET spent_units = 0 WHERE consumer_id = :c", c=ana_id)
    result = _verify(admin)
    assert result["valid"] is False and result["chain_valid"] is True
    assert result["reconciled"] is False and result["first_bad_seq"] is None
    assert result["discrepancies"] == [
        {
            "kind": "budget",
            "consumer": "ana",
            "dataset": "events",
            "spent": 0,
            "ledgered": pytest.approx(0.3),
            "detail": result["discrepancies"][0]["detail"],
            "release_id": None,
            "total": None,
        }
    ]
    _execute(
        engine, "UPDATE budgets SET spent_units = :s WHERE consumer_id = :c", s=spent, c=ana_id
    )
    assert _verify(admin)["valid"] is True
    # (b) a budget's total raised past its grant
    _execute(
        engine, "UPDATE budgets SET total_units = total_units * 10 WHERE consumer_id = :c", c=ana_id
    )
    assert _kinds(_verify(admin)) == [("budget_total", "ana", "events")]
    _execute(
        engine, "UPDATE budgets SET total_units = total_units / 10 WHERE consumer_id = :c", c=ana_id
    )
    # (c) the dataset cap's spending reset, (d) the cap raised
    cap_spent = _scalar(engine, "SELECT cap_spent_units FROM datasets WHERE name = 'events'")
    assert cap_spent == 5 * 10**11  # ana's three and bob's two (failed + retried) releases
    _execute(engine, "UPDATE datasets SET cap_spent_units = 0")
    result = _verify(admin)
    assert _kinds(result) == [("cap", None, "events")]
    assert result["discrepancies"][0]["spent"] == 0
    assert result["discrepancies"][0]["ledgered"] == pytest.approx(0.5)
    _execute(engine, "UPDATE datasets SET cap_spent_units = :s", s=cap_spent)
    _execute(engine, "UPDATE datasets SET cap_total_units = cap_total_units + 1")
    assert _kinds(_verify(admin)) == [("cap_total", None, "events")]
    _execute(engine, "UPDATE datasets SET cap_total_units = cap_total_units - 1")
    assert _verify(admin)["valid"] is True
    # (e) a done release row deleted (so the same query would be charged again)
    release_id = _scalar(
        engine,
        "SELECT id FROM releases WHERE consumer_id = :c ORDER BY ledger_seq LIMIT 1",
        c=ana_id,
    )
    _execute(engine, "DELETE FROM releases WHERE id = :r", r=release_id)
    result = _verify(admin)
    assert _kinds(result) == [("release_missing", "ana", "events")]
    assert result["discrepancies"][0]["release_id"] == release_id
    # (f) a release row whose ledger entry is another release's
    _execute(
        engine, "UPDATE releases SET ledger_seq = ledger_seq - 1 WHERE consumer_id = :c", c=ana_id
    )
    result = _verify(admin)
    assert result["reconciled"] is False
    assert {d["kind"] for d in result["discrepancies"]} >= {"release", "release_missing"}


def test_the_discrepancy_list_is_bounded(
    server: Service, admin: httpx.Client, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _populate(server, monkeypatch)
    monkeypatch.setattr(reconcile, "MAX_DISCREPANCIES", 1)
    _execute(engine, "UPDATE budgets SET spent_units = 0")
    result = _verify(admin)
    assert result["discrepancy_count"] == 2 and len(result["discrepancies"]) == 1


@pytest.mark.slow  # releases racing repeated verifications until they are done
def test_a_busy_untampered_ledger_reconciles(
    server: Service, admin: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients = _populate(server, monkeypatch)
    stop = threading.Event()
    errors: list[str] = []

    def spend(client: httpx.Client, bodies: list[dict[str, Any]]) -> None:
        for body in bodies:
            if stop.is_set():
                return
            response = client.post("/v1/queries", json=body)
            if response.status_code not in (200, 409):
                errors.append(response.text)

    queries = distinct_queries(40, epsilon=0.01)[4:]
    workers = [
        threading.Thread(target=spend, args=(clients["ana"], queries[:18])),
        threading.Thread(target=spend, args=(clients["bob"], queries[18:])),
    ]
    for worker in workers:
        worker.start()
    results = []
    try:
        while any(w.is_alive() for w in workers):
            results.append(_verify(admin))
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=120)
    results.append(_verify(admin))
    assert errors == []
    assert len(results) >= 2
    assert all(r["valid"] and r["reconciled"] for r in results), [
        r for r in results if not r["valid"]
    ]
    assert results[-1]["entries"] > results[0]["entries"]


def test_ledgered_amounts_convert_exactly() -> None:
    assert ledgered_units(Decimal("0.1")) == 10**11
    assert ledgered_units(Decimal("1e-12")) == 1
    assert ledgered_units(Decimal("3")) == 3 * 10**12
    assert ledgered_units(Decimal("0.123456789012")) == 123456789012
    assert ledgered_units(0) == 0
