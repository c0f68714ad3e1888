"""Crash safety with the service as a real subprocess, on SQLite and PostgreSQL.

SIGKILL while 20 queries are in flight (at a moment when some releases are debited
but not yet computed), then a restart on the same database: the ledger verifies,
what is spent is exactly the sum of the ``release`` entries, every release a client
received is ledgered, and the releases the kill interrupted are failed as abandoned
(no refund) when asked again instead of blocking that query for ever. A clean stop
(SIGTERM) drains in-flight requests and a restart keeps budgets, ledger and cached
releases."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.reliability.support import (
    ServerProcess,
    assert_ledger_valid,
    auth,
    budget_of,
    distinct_queries,
    ledger_entries,
    setup_events,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
IN_FLIGHT = 20
DEVICES = 4000  # enough rows that a release takes a while to compute
DEADLINE = 60.0
SETTLE = 0.2  # seconds a frozen server is given for its sent commits to land


@contextmanager
def _database(url: str) -> Iterator[Any]:
    engine = create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def _pending(engine: Any) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                text("SELECT count(*) FROM releases WHERE status = 'pending'")
            ).scalar_one()
        )


def _computing(engine: Any, data_dir: Path) -> set[str]:
    """Releases debited whose values exist nowhere yet: pending and not in the spool
    (a spooled one is stored by the sweeper after a restart, not abandoned)."""
    with engine.connect() as connection:
        pending = connection.execute(text("SELECT id FROM releases WHERE status = 'pending'"))
        ids = {str(row[0]) for row in pending}
    spooled = {path.stem for path in (data_dir / ".ruis" / "spool").glob("*.json")}
    return ids - spooled


def _spent_matches_releases(admin: httpx.Client) -> list[dict[str, Any]]:
    released = ledger_entries(admin, kind="release", consumer="ana")
    total = sum((Decimal(str(e["cost"]["epsilon"])) for e in released), Decimal(0))
    assert Decimal(str(budget_of(admin, "ana")["spent"])) == total
    return released


def test_sigkill_with_queries_in_flight_then_restart(
    db_url: str, data_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    first = ServerProcess(database_url=db_url, data_dir=data_dir, log_path=log).start()
    bodies = distinct_queries(IN_FLIGHT)
    received: dict[int, dict[str, Any]] = {}  # index -> 200 body received before the kill
    lock = threading.Lock()
    try:
        keys = setup_events(first.url, data_dir, analysts={"ana": 100.0}, devices=DEVICES)
        client = httpx.Client(
            base_url=first.url,
            headers=auth(keys["ana"]),
            timeout=DEADLINE,
            limits=httpx.Limits(max_connections=IN_FLIGHT),
        )

        def send(index: int) -> None:
            try:
                response = client.post("/v1/queries", json=bodies[index])
            except httpx.TransportError:  # the server died under this request
                return
            assert response.status_code == 200, response.text
            with lock:
                received[index] = response.json()

        with _database(db_url) as engine, ThreadPoolExecutor(IN_FLIGHT) as pool:
            futures = [pool.submit(send, i) for i in range(IN_FLIGHT)]
            # Kill once some answers are out and releases are debited but still being
            # computed (pending): the case a crash must not leave stuck. The server is
            # frozen first (SIGSTOP) so that what the database and the spool hold at the
            # kill is seen: if every release it saw pending has its values by then, it
            # runs on and we wait for another moment.
            deadline = time.monotonic() + DEADLINE
            while True:
                assert time.monotonic() < deadline, "never had releases pending at the kill"
                assert len(received) < IN_FLIGHT - 2, "all answered before the kill"
                if len(received) >= 3 and _pending(engine) >= 2:
                    first.freeze()
                    time.sleep(SETTLE)  # commits already sent land before we look
                    if _computing(engine, data_dir):
                        break
                    first.thaw()
                time.sleep(0.005)
            first.kill()
            for future in futures:
                future.result(timeout=DEADLINE)
        client.close()
    finally:
        first.kill()
    assert 3 <= len(received) < IN_FLIGHT

    second = ServerProcess(database_url=db_url, data_dir=data_dir, log_path=log).start()
    try:
        with second.client() as admin, second.client(keys["ana"]) as ana:
            assert_ledger_valid(admin)
            released = _spent_matches_releases(admin)
            outputs = {
                e["details"]["release_id"]: e["details"]
                for e in ledger_entries(admin, kind="release_output", consumer="ana")
            }
            ledgered = {e["details"]["release_id"] for e in released}
            for body in received.values():  # every answer a client got is in the ledger
                assert body["id"] in ledgered and outputs[body["id"]]["status"] == "done"
                assert outputs[body["id"]]["rows"] == body["rows"]
            interrupted = ledgered - set(outputs)
            assert len(interrupted) >= 1, "no release was left pending by the kill"

            # Ask everything again: answered ones come from the cache; interrupted ones
            # are failed as abandoned and computed anew (not stuck "in progress").
            started = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                again = list(pool.map(lambda b: ana.post("/v1/queries", json=b), bodies))
            assert time.monotonic() - started < DEADLINE
            completed = {i for i, r in outputs.items() if r["status"] == "done"}
            new = 0
            for index, response in enumerate(again):
                assert response.status_code == 200, response.text
                body = response.json()
                if index in received:
                    assert body["cached"] is True and body["id"] == received[index]["id"]
                    assert body["rows"] == received[index]["rows"]
                elif body["cached"]:  # completed before the kill, the answer lost on the way
                    assert body["id"] in completed
                else:  # never debited, or interrupted: a new release
                    assert body["id"] not in ledgered
                    new += 1
            outputs = {
                e["details"]["release_id"]: e
                for e in ledger_entries(admin, kind="release_output", consumer="ana")
            }
            for release_id in interrupted:
                entry = outputs[release_id]
                assert entry["details"]["status"] == "failed", entry
                assert entry["details"]["reason"] == "abandoned" and entry["actor"] == "system"
            released = _spent_matches_releases(admin)  # the abandoned ones stay debited
            assert len(released) == len(ledgered) + new
            assert new >= len(interrupted)
            assert_ledger_valid(admin)
        with _database(db_url) as engine:
            assert _pending(engine) == 0
    finally:
        second.kill()


def test_sigterm_drains_and_restart_keeps_budgets_ledger_and_cache(
    db_url: str, data_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    first = ServerProcess(database_url=db_url, data_dir=data_dir, log_path=log).start()
    bodies = distinct_queries(12)
    try:
        keys = setup_events(first.url, data_dir, analysts={"ana": 100.0}, devices=DEVICES)
        with first.client(keys["ana"]) as ana:
            answered = [ana.post("/v1/queries", json=body) for body in bodies[:2]]
            assert [r.status_code for r in answered] == [200, 200]

            # A clean stop while more queries are in flight: they finish first.
            done = threading.Semaphore(0)

            def send(body: dict[str, Any]) -> int | None:
                try:
                    return ana.post("/v1/queries", json=body).status_code
                except httpx.TransportError:  # not yet accepted when the server stopped
                    return None
                finally:
                    done.release()

            with ThreadPoolExecutor(10) as pool:
                futures = [pool.submit(send, body) for body in bodies[2:]]
                assert done.acquire(timeout=DEADLINE)  # one answered: the rest in flight
                first.terminate()
                statuses = [f.result(timeout=DEADLINE) for f in futures]
        assert set(statuses) <= {200, None}, statuses
    finally:
        first.kill()

    second = ServerProcess(database_url=db_url, data_dir=data_dir, log_path=log).start()
    try:
        with second.client() as admin, second.client(keys["ana"]) as ana:
            before = assert_ledger_valid(admin)
            releases = ledger_entries(admin, kind="release")
            outputs = ledger_entries(admin, kind="release_output")
            # Drained: every debited release was completed before the process exited.
            assert sorted(e["details"]["release_id"] for e in releases) == sorted(
                e["details"]["release_id"] for e in outputs
            )
            assert all(e["details"]["status"] == "done" for e in outputs)
            assert len(releases) == 2 + statuses.count(200)
            _spent_matches_releases(admin)
            budget = budget_of(admin, "ana")
            assert budget["total"] == 100

            for body, original in zip(bodies, answered, strict=False):
                again = ana.post("/v1/queries", json=body)
                assert again.status_code == 200
                cached, stored = again.json(), original.json()
                assert cached["cached"] is True and cached["id"] == stored["id"]
                assert cached["rows"] == stored["rows"] and cached["cost"] == stored["cost"]
                reread = ana.get(f"/v1/queries/{stored['id']}").json()
                assert reread["rows"] == stored["rows"]
            assert budget_of(admin, "ana") == budget  # the cache cost nothing
            after = assert_ledger_valid(admin)
            assert after["entries"] == before["entries"] + 4  # two rereads each way
            assert ledger_entries(admin)[before["entries"] - 1]["hash"] == before["head"]
    finally:
        second.kill()
