"""Quotas and limits over HTTP: minimum cost, cells, concurrency queues, rate, overrides,
and ledger pages bounded in bytes (issue 10, "Load")."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from api.limits import Limiter
from api.settings import LimitSettings, Settings
from tests.conftest import ADMIN_KEY, Service
from tests.factories import MUNICIPALITIES, events_metadata
from tests.support.api import VISITORS, analyst, register_events
from tests.support.inprocess import InProcessApp, start_app

BIG_KEYS = MUNICIPALITIES + [f"XX{i:05d}" for i in range(6_000)]
"""Public keys beyond the data's: a grouping whose plan takes a while to compile and run."""
WIDE = {**VISITORS, "group_by": ["municipality", "day"]}


@contextmanager
def serve(
    settings: Settings, *, quantum_ms: int | None = None, **limits: Any
) -> Iterator[InProcessApp]:
    """The real app (in-process) with these limits (the rest at their defaults);
    ``quantum_ms`` sets the release time quantum (a fresh release then holds its slot for
    at least that long)."""
    changed = dataclasses.replace(settings, limits=LimitSettings(**limits))
    if quantum_ms is not None:
        changed = dataclasses.replace(changed, release_time_quantum_ms=quantum_ms)
    running = start_app(changed)
    try:
        yield running
    finally:
        running.stop()


def _setup(
    server: Service,
    *,
    analysts: tuple[str, ...] = ("ana",),
    amount: float = 50,
    big: bool = False,
) -> tuple[httpx.Client, dict[str, httpx.Client]]:
    admin = server.client(ADMIN_KEY)
    columns = events_metadata()["columns"]
    if big:
        columns["municipality"]["keys"] = BIG_KEYS
    register_events(server, admin, columns=columns)
    return admin, {name: analyst(server, admin, name, amount=amount) for name in analysts}


def _spent(admin: httpx.Client, name: str = "ana") -> float:
    budget = admin.get("/v1/budgets", params={"consumer": name}).json()["items"][0]
    return float(budget["spent"])


def _entries(admin: httpx.Client, **params: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = admin.get(
            "/v1/ledger", params={**params, **({"cursor": cursor} if cursor else {})}
        ).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def _limiter(server: Service) -> Limiter:
    limiter: Limiter = server.app.state.limiter
    return limiter


def _is_429(response: httpx.Response, reason: str) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["Retry-After"]) >= 1
    body = response.json()
    assert body["type"] == "too-many-requests" and body["reason"] == reason


def test_a_cost_below_the_minimum_is_refused_before_any_debit(settings: Settings) -> None:
    with serve(settings) as server:  # the defaults: ε 0.001, ρ 1e-6
        admin, clients = _setup(server)
        ana = clients["ana"]
        for path in ("/v1/queries", "/v1/queries/preview"):
            probe = ana.post(path, json={**VISITORS, "privacy": {"epsilon": "1e-12"}})
            assert probe.status_code == 422, probe.text
            assert probe.json()["type"] == "cost-below-minimum"
            assert probe.json()["minimum"] == {"epsilon": 0.001}
            # an accuracy target loose enough to need less than the minimum
            loose = ana.post(path, json={**VISITORS, "privacy": {"max_error": 1e9}})
            assert loose.status_code == 422, loose.text
            assert loose.json()["type"] == "cost-below-minimum"
        assert (
            ana.post("/v1/queries", json={**VISITORS, "privacy": {"epsilon": 0.001}}).status_code
            == 200
        )
        assert _spent(admin) == 0.001
        # the probes are ledgered as one refusal (the rest of the minute only counted)
        ledgered = [
            e for e in _entries(admin, consumer="ana") if e["kind"] in ("release", "refused")
        ]
        assert [e["kind"] for e in ledgered] == ["refused", "release"]
        refusal = ledgered[0]
        assert refusal["details"]["reason"] == "cost-below-minimum"
        assert refusal["cost"] == {"model": "pure", "epsilon": 0}
        assert refusal["details"]["unledgered_before"] == 0


def test_too_many_cells_are_refused_in_query_and_preview(settings: Settings) -> None:
    with serve(settings, max_cells=20) as server:
        admin, clients = _setup(server)
        ana = clients["ana"]
        wide = {**VISITORS, "group_by": ["municipality", "day"]}  # 6 × 4 = 24 cells
        for path in ("/v1/queries", "/v1/queries/preview"):
            response = ana.post(path, json=wide)
            assert response.status_code == 422, response.text
            body = response.json()
            assert body["type"] == "too-many-cells"
            assert body["cells"] == 24 and body["max_cells"] == 20
        assert ana.post("/v1/queries", json=VISITORS).status_code == 200  # 6 cells
        assert _spent(admin) == 0.5


def test_parallel_releases_of_one_consumer_queue_at_most_two_at_once(settings: Settings) -> None:
    with serve(settings, max_concurrent_per_consumer=2, queue_timeout_seconds=120) as server:
        admin, clients = _setup(server, analysts=("ana", "bob"))
        ana = clients["ana"]
        queries = [{**WIDE, "privacy": {"epsilon": f"0.{10 + i}"}} for i in range(8)]
        with ThreadPoolExecutor(len(queries)) as pool:
            responses = list(pool.map(lambda q: ana.post("/v1/queries", json=q), queries))
        assert [r.status_code for r in responses] == [200] * len(queries)
        ana_id = next(
            c["id"] for c in admin.get("/v1/consumers").json()["items"] if c["name"] == "ana"
        )
        assert _limiter(server).releases.peak[ana_id] == 2  # queued, never more than 2
        assert not any(e["kind"] == "refused" for e in _entries(admin, consumer="ana"))


@pytest.mark.slow  # waits out release time quanta of seconds
def test_a_release_waiting_past_the_queue_timeout_gets_429_and_nothing_is_spent(
    settings: Settings,
) -> None:
    # The quantum makes the first release hold ana's only slot for at least 3 s, whatever
    # the machine's speed.
    with serve(
        settings,
        max_concurrent_per_consumer=1,
        queue_timeout_seconds=0.05,
        max_cells=1_000_000,
        quantum_ms=3000,
    ) as server:
        admin, clients = _setup(server, big=True)
        ana = clients["ana"]
        slow = threading.Thread(target=lambda: ana.post("/v1/queries", json=VISITORS))
        slow.start()
        time.sleep(0.5)  # the slow release holds ana's only slot until its quantum ends
        refused = ana.post("/v1/queries", json={**VISITORS, "privacy": {"epsilon": 0.25}})
        slow.join()
        _is_429(refused, "concurrency_limit")
        assert _spent(admin) == 0.5  # only the slow release
        entries = [e for e in _entries(admin, consumer="ana") if e["kind"] == "refused"]
        assert len(entries) == 1
        assert entries[0]["details"]["reason"] == "concurrency_limit"
        assert entries[0]["cost"] == {"model": "pure", "epsilon": 0}


def test_rate_limit_is_429_with_retry_after_and_ledgered_once_per_minute(
    settings: Settings,
) -> None:
    with serve(settings, requests_per_minute=1, burst=3) as server:
        admin, clients = _setup(server)
        ana = clients["ana"]
        responses = [ana.post("/v1/queries/preview", json=VISITORS) for _ in range(6)]
        assert [r.status_code for r in responses[:3]] == [200] * 3
        for response in responses[3:]:
            _is_429(response, "rate_limited")
        refused = [e for e in _entries(admin, consumer="ana") if e["kind"] == "refused"]
        assert len(refused) == 1  # the first of the minute; the other two are counted
        assert refused[0]["details"]["reason"] == "rate_limited"
        assert refused[0]["details"]["gateway"] == "preview"
        assert refused[0]["cost"] == {"model": "pure", "epsilon": 0}
        assert refused[0]["dataset"] == "events"
        assert _spent(admin) == 0


def test_an_admin_overrides_one_consumers_limits(settings: Settings) -> None:
    with serve(settings) as server:
        admin, clients = _setup(server, analysts=("ana", "bob"))
        ana, bob = clients["ana"], clients["bob"]
        put = admin.put("/v1/consumers/ana/limits", json={"max_cells": 5, "min_epsilon": "0.6"})
        assert put.status_code == 200, put.text
        assert put.json()["overrides"]["max_cells"] == 5
        assert put.json()["effective"]["min_epsilon"] == 0.6
        assert put.json()["effective"]["requests_per_minute"] == 6000  # the default
        got = admin.get("/v1/consumers/ana/limits").json()
        assert got == put.json()
        assert ana.post("/v1/queries/preview", json=VISITORS).json()["type"] == "too-many-cells"
        assert bob.post("/v1/queries/preview", json=VISITORS).status_code == 200
        assert ana.put("/v1/consumers/ana/limits", json={}).status_code == 403
        assert admin.put("/v1/consumers/nobody/limits", json={}).status_code == 404
        assert admin.put("/v1/consumers/ana/limits", json={"burst": 0}).status_code == 422
        reset = admin.put("/v1/consumers/ana/limits", json={"min_epsilon": "0.5"})
        assert reset.json()["effective"]["max_cells"] == 100_000
        assert ana.post("/v1/queries", json=VISITORS).status_code == 200
        logged = [e for e in _entries(admin, kind="limits_set")]
        assert [e["details"]["limits"]["max_cells"] for e in logged] == [5, None]
        assert logged[1]["details"]["previous"]["max_cells"] == 5


@pytest.mark.slow  # eleven releases of 6,006 cells
def test_ledger_pages_stay_within_the_byte_budget_and_hold_at_least_one_entry(
    settings: Settings,
) -> None:
    budget = 4096
    with serve(settings, ledger_page_bytes=budget, max_cells=1_000_000) as server:
        admin, clients = _setup(server, big=True)
        ana = clients["ana"]
        # a large entry (release_output of 6,006 cells) among small ones
        assert (
            ana.post("/v1/queries", json={**VISITORS, "privacy": {"epsilon": 1}}).status_code == 200
        )
        for i in range(10):
            assert (
                ana.post(
                    "/v1/queries", json={**VISITORS, "privacy": {"epsilon": f"0.0{10 + i}"}}
                ).status_code
                == 200
            )
        pages: list[list[dict[str, Any]]] = []
        cursor: str | None = None
        while True:
            response = admin.get(
                "/v1/ledger", params={"limit": 1000, **({"cursor": cursor} if cursor else {})}
            )
            page = response.json()
            pages.append(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        sizes = [
            [len(json.dumps(e, separators=(",", ":"), ensure_ascii=False).encode()) for e in items]
            for items in pages
        ]
        assert all(len(items) >= 1 for items in pages)
        assert all(sum(s) <= budget for s in sizes if len(s) > 1)
        assert any(len(s) == 1 and s[0] > budget for s in sizes)  # the big entry, alone
        assert len(pages) > 3
        seqs = [e["seq"] for items in pages for e in items]
        assert seqs == list(range(1, len(seqs) + 1))
        exported = admin.get("/v1/ledger/export").text.splitlines()
        assert [json.loads(line)["seq"] for line in exported] == seqs
        assert admin.get("/v1/ledger/verify").json()["valid"] is True


@pytest.mark.slow  # waits out release time quanta of seconds
def test_another_consumer_is_served_before_a_queue_of_the_first(settings: Settings) -> None:
    # The quantum makes each release hold the only slot for at least 1 s, so bob surely
    # arrives while ana's first computes and her other two wait.
    with serve(
        settings,
        max_concurrent_releases=1,
        max_concurrent_per_consumer=1,
        queue_timeout_seconds=120,
        quantum_ms=1000,
    ) as server:
        _, clients = _setup(server, analysts=("ana", "bob"), big=True)
        ana, bob = clients["ana"], clients["bob"]
        finished: list[str] = []

        def ask(client: httpx.Client, name: str, epsilon: str) -> None:
            response = client.post(
                "/v1/queries", json={**VISITORS, "privacy": {"epsilon": epsilon}}
            )
            assert response.status_code == 200, response.text
            finished.append(name)

        threads = [threading.Thread(target=ask, args=(ana, "ana", f"0.{10 + i}")) for i in range(3)]
        for thread in threads:
            thread.start()
            time.sleep(0.05)
        time.sleep(0.2)  # ana: one computing (6,006 cells), two queued
        threads.append(threading.Thread(target=ask, args=(bob, "bob", "0.5")))
        threads[-1].start()
        for thread in threads:
            thread.join()
        assert finished.index("bob") <= 1  # right after ana's first, not after her queue


@pytest.mark.slow  # waits out release time quanta of seconds
def test_heavy_queries_compute_in_their_own_lane_and_never_hold_back_small_ones(
    settings: Settings,
) -> None:
    # Two release slots, of which heavy queries (more than 1,000 cells) may hold only one;
    # the quantum makes every release hold its slot for at least 2 s.
    with serve(
        settings,
        max_concurrent_releases=2,
        max_concurrent_per_consumer=2,
        max_concurrent_heavy_releases=1,
        heavy_cells=1_000,
        queue_timeout_seconds=120,
        quantum_ms=2000,
    ) as server:
        _, clients = _setup(server, analysts=("ana", "bob"), big=True)
        ana, bob = clients["ana"], clients["bob"]
        finished: list[str] = []

        def ask(client: httpx.Client, name: str, body: dict[str, Any]) -> None:
            response = client.post("/v1/queries", json=body)
            assert response.status_code == 200, response.text
            finished.append(name)

        heavy = [
            threading.Thread(
                target=ask, args=(ana, "ana", {**VISITORS, "privacy": {"epsilon": f"0.{10 + i}"}})
            )
            for i in range(3)
        ]
        for thread in heavy:  # 6,006 cells each: heavy
            thread.start()
            time.sleep(0.05)
        time.sleep(0.3)
        small = threading.Thread(
            target=ask,
            args=(
                bob,
                "bob",
                {  # 4 cells
                    **VISITORS,
                    "group_by": ["day"],
                    "max_partitions_contributed": 4,
                },
            ),
        )
        small.start()
        for thread in [*heavy, small]:
            thread.join()
        # bob computed beside ana's first heavy release, not after her queue of heavy ones
        assert finished.index("bob") <= 1, finished
        limiter = _limiter(server)
        assert max(limiter.heavy_releases.peak.values()) == 1
        assert limiter.releases.peak  # bob's small release took a slot of the light lane
