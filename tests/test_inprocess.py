"""The in-process app (the default ``server``) is the app uvicorn serves: its lifespan ran
(migrations, bootstrap admin, the sweeper), its middleware and problem handlers answer, and
a sequence of requests gets the same statuses, headers and bodies in-process as over real
HTTP (up to ids, times, noise and the headers only uvicorn adds)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from api.settings import Settings
from tests.conftest import ADMIN_KEY, Service, start_server
from tests.support.api import VISITORS, analyst, register_events
from tests.support.inprocess import start_app

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
UVICORN_ONLY = {"date", "server", "transfer-encoding"}
"""Headers uvicorn adds (the HTTP edge, not the app): to every response, and the chunked
framing of a streamed one."""
VARYING = {"x-request-id", "content-length"}
"""Header values that differ between any two runs (a new id; the body's noisy numbers)."""
VARYING_FIELDS = {"id", "time", "created_at", "hash", "prev_hash", "head", "request_id"}
VARYING_FIELDS |= {"release_id", "rows", "key_id", "checkpoint", "inclusion", "root"}
"""Body fields that differ between any two runs: ids, times, hashes, noisy rows."""


def _sequence(service: Service) -> list[tuple[int, dict[str, str], Any]]:
    """Set-up, a release, its re-read, refusals and errors of each kind; what came back."""
    admin = service.client(ADMIN_KEY)
    register_events(service, admin)
    ana = analyst(service, admin)
    calls = [
        (ana, "POST", "/v1/queries", {"json": VISITORS}),
        (ana, "POST", "/v1/queries", {"json": VISITORS}),  # cached
        (ana, "POST", "/v1/queries", {"json": {**VISITORS, "privacy": {"epsilon": 5}}}),
        (ana, "POST", "/v1/queries", {"json": {**VISITORS, "statistic": "median"}}),
        (ana, "POST", "/v1/queries", {"content": b"{", "headers": {"content-type": "x"}}),
        (ana, "POST", "/v1/queries", {"content": b"x" * 2_000_000}),
        (ana, "GET", "/v1/ledger", {}),
        (service.client(), "GET", "/v1/budgets", {}),
        (service.client("nope"), "GET", "/v1/budgets", {}),
        (admin, "GET", "/no/such/path", {}),
        (admin, "DELETE", "/v1/datasets", {}),
        (admin, "GET", "/v1/ledger/verify", {}),
        (admin, "GET", "/v1/ledger/export", {"params": {"format": "csv"}}),
        (admin, "GET", "/healthz", {"headers": {"X-Request-ID": "given-1"}}),
        (admin, "GET", "/readyz", {}),
    ]
    seen = []
    for client, method, path, kwargs in calls:
        response = client.request(method, path, **kwargs)
        headers = {
            name: ("*" if name in VARYING else value)
            for name, value in response.headers.items()
            if name not in UVICORN_ONLY
        }
        body: Any = response.text
        if response.headers.get("content-type", "").endswith("json"):
            body = _shape(response.json())
        elif "csv" in response.headers.get("content-type", ""):
            body = len(response.text.splitlines())
        seen.append((response.status_code, headers, body))
    return seen


def _shape(document: Any) -> Any:
    """``document`` with what differs between runs (ids, hashes, times, noisy values)
    replaced by its type."""
    if isinstance(document, dict):
        return {
            key: type(value).__name__ if key in VARYING_FIELDS else _shape(value)
            for key, value in document.items()
        }
    if isinstance(document, list):
        return [_shape(item) for item in document]
    if isinstance(document, float):
        return "float"
    return document


@pytest.fixture
def uvicorn_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings like ``settings`` but with a database and data directory of their own."""
    other = tmp_path_factory.mktemp("live")
    (other / "data").mkdir()
    return Settings(
        database_url=f"sqlite:///{other / 'ruis.db'}",
        data_dir=other / "data",
        bootstrap_admin_key=ADMIN_KEY,
    )


@SQLITE_ONLY
def test_in_process_answers_as_uvicorn_does(server: Service, uvicorn_settings: Settings) -> None:
    in_process = _sequence(server)
    live = start_server(uvicorn_settings)
    try:
        over_http = _sequence(live)
    finally:
        live.stop()
    assert [status for status, _, _ in in_process] == [
        200, 200, 409, 422, 422, 413, 403, 401, 401, 404, 405, 200, 200, 200, 200
    ]  # fmt: skip
    assert in_process == over_http


@SQLITE_ONLY
def test_the_lifespan_ran_and_stops(settings: Settings) -> None:
    running = start_app(settings)
    try:
        assert running.app.state.db is not None
        assert any(thread.name == "ruis-sweeper" for thread in threading.enumerate())
        assert running.client(ADMIN_KEY).get("/v1/consumers").status_code == 200
    finally:
        running.stop()
    assert not any(thread.name == "ruis-sweeper" for thread in threading.enumerate())


@SQLITE_ONLY
def test_requests_from_many_threads_run_at_once(server: Service) -> None:
    """Worker threads of the app run concurrently, as under uvicorn: twenty previews from
    twenty threads all answer (none waits for another to finish first)."""
    admin = server.client(ADMIN_KEY)
    register_events(server, admin)
    ana = analyst(server, admin)
    barrier = threading.Barrier(20, timeout=30)
    statuses: list[int] = []

    def ask() -> None:
        barrier.wait()
        statuses.append(ana.post("/v1/queries/preview", json=VISITORS).status_code)

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert statuses == [200] * 20


def test_an_unhandled_error_is_a_500_in_process_too(
    server: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception no handler takes is answered (500 problem), not raised into the test."""

    def broken() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(server.app.state.db, "read", broken)
    response = server.client(ADMIN_KEY).get("/v1/budgets")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
