"""Releases leave at multiples of the time quantum; answers that read no data are not delayed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from api.release_timing import after_debit, padded_duration, quantised
from api.settings import Settings
from tests.conftest import ADMIN_KEY, Service
from tests.support.api import analyst, register_events
from tests.support.inprocess import InProcessApp, start_app

QUANTUM_MS = 400
VISITORS: dict[str, Any] = {
    "dataset": "events",
    "statistic": "unit_count",
    "group_by": ["municipality"],
    "max_partitions_contributed": 3,
}


@pytest.fixture
def slow_server(settings: Settings) -> Iterator[InProcessApp]:
    running = start_app(replace(settings, release_time_quantum_ms=QUANTUM_MS))
    try:
        yield running
    finally:
        running.stop()


def _analyst(server: Service, epsilon: float = 100.0) -> httpx.Client:
    admin = server.client(ADMIN_KEY)
    register_events(server, admin)
    return analyst(server, admin, amount=epsilon)


def _timed(client: httpx.Client, body: dict[str, Any]) -> tuple[httpx.Response, float]:
    t0 = time.perf_counter()
    response = client.post("/v1/queries", json=body)
    return response, time.perf_counter() - t0


def test_padded_duration() -> None:
    assert padded_duration(0.0, 0.25) == 0.25
    assert padded_duration(0.1, 0.25) == 0.25
    assert padded_duration(0.25, 0.25) == 0.25
    assert padded_duration(0.2501, 0.25) == 0.5


def test_fresh_releases_take_a_quantum_and_cached_ones_do_not(slow_server: Service) -> None:
    analyst = _analyst(slow_server)
    quantum = QUANTUM_MS / 1000
    for i, where in enumerate(([], [{"column": "municipality", "op": "eq", "value": "GM0363"}])):
        body = {**VISITORS, "where": where, "privacy": {"epsilon": 0.5 + i / 100}}
        response, elapsed = _timed(analyst, body)
        assert response.status_code == 200, response.text
        assert response.json()["cached"] is False
        # the server returns at a multiple of the quantum; the client adds loopback time
        assert elapsed >= quantum
        again, cached_elapsed = _timed(analyst, body)
        assert again.json()["cached"] is True
        assert cached_elapsed < quantum  # a cached answer reads no data: not padded


def test_refusals_and_bad_queries_are_not_padded(slow_server: Service) -> None:
    analyst = _analyst(slow_server, epsilon=1.0)
    response, elapsed = _timed(analyst, {**VISITORS, "privacy": {"epsilon": 5}})
    assert response.status_code == 409
    bad, bad_elapsed = _timed(
        analyst, {**VISITORS, "group_by": ["nope"], "privacy": {"epsilon": 0.1}}
    )
    assert bad.status_code == 422
    assert max(elapsed, bad_elapsed) < QUANTUM_MS / 1000


def test_errors_after_the_debit_are_padded_and_earlier_ones_are_not() -> None:
    """The use-case's wrapper: an error raised after ``after_debit`` leaves at the quantum."""

    @quantised
    def use_case(debit: bool) -> None:
        if debit:
            after_debit(QUANTUM_MS)
        raise RuntimeError("failed")

    for debit in (True, False):
        t0 = time.perf_counter()
        with pytest.raises(RuntimeError):
            use_case(debit)
        elapsed = time.perf_counter() - t0
        assert (elapsed >= QUANTUM_MS / 1000) is debit


def test_setting_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUIS_RELEASE_TIME_QUANTUM_MS", "125")
    assert Settings.from_env().release_time_quantum_ms == 125
    monkeypatch.delenv("RUIS_RELEASE_TIME_QUANTUM_MS")
    assert Settings.from_env().release_time_quantum_ms > 0
