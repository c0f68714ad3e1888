"""The privacy filter under concurrent HTTP load: 40 different queries of ε = 0.1 racing
for a budget of ε = 1.0 (exactly 10 fit) — in one process, with ``ruis serve --workers 3``,
and with two replicas on one PostgreSQL database — and two analysts racing for one
dataset's ``budget_cap``. Never a unit overspent, every attempt in a valid ledger."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Service
from tests.reliability.support import (
    ServerProcess,
    assert_ledger_valid,
    auth,
    budget_of,
    distinct_queries,
    ledger_entries,
    serving,
    setup_events,
)

N = 40
COST = 0.1
FITS = 10  # queries of COST in a budget of 1.0

Call = tuple[str, str, dict[str, Any]]  # (base url, api key, query body)


def race(calls: list[Call]) -> list[httpx.Response]:
    """Send every call at once (all threads released together); the responses in order."""
    clients: dict[tuple[str, str], httpx.Client] = {}
    for url, key, _ in calls:
        if (url, key) not in clients:
            clients[(url, key)] = httpx.Client(
                base_url=url,
                headers=auth(key),
                timeout=120,
                limits=httpx.Limits(max_connections=len(calls)),
            )
    barrier = threading.Barrier(len(calls), timeout=60)

    def send(call: Call) -> httpx.Response:
        url, key, body = call
        barrier.wait()
        return clients[(url, key)].post("/v1/queries", json=body)

    try:
        with ThreadPoolExecutor(max_workers=len(calls)) as pool:
            return list(pool.map(send, calls))
    finally:
        for client in clients.values():
            client.close()


def check_exactly_ten_fit(
    responses: list[httpx.Response], admin: httpx.Client, analyst: str = "ana"
) -> None:
    """10 releases, 30 budget-exceeded problems, spent exactly 1.0, all in a valid ledger."""
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: FITS, 409: N - FITS}, (
        statuses,
        [r.text for r in responses if r.status_code >= 500],
    )
    for response in responses:
        if response.status_code == 409:
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["type"] == "budget-exceeded"
        else:
            assert response.json()["cached"] is False
    budget = budget_of(admin, analyst)
    assert budget["spent"] == 1 and budget["remaining"] == 0 and budget["total"] == 1
    released = ledger_entries(admin, kind="release", consumer=analyst)
    assert len(released) == FITS
    assert sum(e["cost"]["epsilon"] for e in released) == pytest.approx(1.0, abs=1e-12)
    assert {e["details"]["release_id"] for e in released} == {
        r.json()["id"] for r in responses if r.status_code == 200
    }
    outputs = ledger_entries(admin, kind="release_output", consumer=analyst)
    assert len(outputs) == FITS and all(e["details"]["status"] == "done" for e in outputs)
    refused = ledger_entries(admin, kind="refused", consumer=analyst)
    assert len(refused) == N - FITS
    assert all(e["cost"]["epsilon"] == 0 and e["details"]["reason"] == "budget" for e in refused)
    verification = assert_ledger_valid(admin)
    assert verification["entries"] == len(ledger_entries(admin))


@pytest.mark.live  # a race of real HTTP connections
def test_forty_queries_at_once_in_one_process(server: Service, admin: httpx.Client) -> None:
    keys = setup_events(server, server.settings.data_dir, analysts={"ana": 1.0})
    responses = race([(server.url, keys["ana"], body) for body in distinct_queries(N)])
    check_exactly_ten_fit(responses, admin)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_forty_queries_at_once_with_three_workers(
    db_url: str, data_dir: Path, tmp_path: Path
) -> None:
    with serving(db_url, data_dir, tmp_path / "serve.log", workers=3) as served:
        keys = setup_events(served.url, data_dir, analysts={"ana": 1.0})
        responses = race([(served.url, keys["ana"], body) for body in distinct_queries(N)])
        assert all(r.status_code < 500 for r in responses), served.log()
        with served.client() as admin:
            check_exactly_ten_fit(responses, admin)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_forty_queries_alternating_between_two_replicas(
    db_url: str, data_dir: Path, tmp_path: Path
) -> None:
    replicas = [
        ServerProcess(database_url=db_url, data_dir=data_dir, log_path=tmp_path / f"replica{i}.log")
        for i in range(2)
    ]
    try:
        # Both start (and migrate the empty database) at the same time.
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(ServerProcess.start, replicas))
        keys = setup_events(replicas[0].url, data_dir, analysts={"ana": 1.0})
        calls = [
            (replicas[i % 2].url, keys["ana"], body) for i, body in enumerate(distinct_queries(N))
        ]
        responses = race(calls)
        assert all(r.status_code < 500 for r in responses), [r.log() for r in replicas]
        for replica in replicas:  # both see the same budget and the same ledger
            with replica.client() as admin:
                check_exactly_ten_fit(responses, admin)
    finally:
        for replica in replicas:
            replica.kill()


@pytest.mark.live  # a race of real HTTP connections
def test_two_analysts_never_exceed_the_dataset_cap(server: Service, admin: httpx.Client) -> None:
    # Each analyst could spend 0.7 alone, but together they may spend only the cap, 1.0.
    keys = setup_events(
        server, server.settings.data_dir, analysts={"ana": 0.7, "bob": 0.7}, cap=1.0
    )
    bodies = distinct_queries(N // 2)
    calls = [(server.url, keys[name], body) for body in bodies for name in ("ana", "bob")]
    responses = race(calls)
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: FITS, 409: N - FITS}, statuses
    assert all(r.json()["type"] == "budget-exceeded" for r in responses if r.status_code == 409)
    dataset = admin.get("/v1/datasets/events").json()
    assert dataset["budget_cap"]["spent"] == 1 and dataset["budget_cap"]["remaining"] == 0
    spent = {name: budget_of(admin, name)["spent"] for name in ("ana", "bob")}
    assert all(amount <= 0.7 + 1e-12 for amount in spent.values()), spent
    assert sum(spent.values()) == pytest.approx(1.0, abs=1e-12)
    released = ledger_entries(admin, kind="release")
    assert len(released) == FITS
    assert sum(e["cost"]["epsilon"] for e in released) == pytest.approx(1.0, abs=1e-12)
    refused = ledger_entries(admin, kind="refused")
    assert len(refused) == N - FITS
    assert {e["details"]["reason"] for e in refused} <= {"budget", "dataset_cap"}
    assert "dataset_cap" in {e["details"]["reason"] for e in refused}
    assert_ledger_valid(admin)
