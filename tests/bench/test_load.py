"""The load test (``bench/load.py``) runs end to end at tiny sizes, so it cannot rot."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from bench.load import (
    Costs,
    LoadConfig,
    Outcomes,
    Run,
    big_analyst,
    format_table,
    retry_after,
    run_load,
)
from bench.load_data import key_sizes
from bench.server import postgres_available
from tests.conftest import require_postgres


@pytest.mark.slow
@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_load_report_has_every_field(database: str) -> None:
    if database == "postgresql":
        require_postgres(postgres_available())
    config = LoadConfig(
        analysts=2,
        duration=5,
        cells=100,
        small_cells=2,
        rows=200,
        small_interval=0.2,
        baseline=2,
        grace=5,
        database=database,
    )
    report = run_load(config)
    assert report["data"] == {"rows": 200, "big_cells": 100, "small_cells": 2}
    small = report["small"]
    assert small["count"] >= 5 and small["statuses"] == {"200": small["count"]}
    assert set(small["latency_s"]) == {"p50", "p90", "p99", "max"}
    assert 0 < small["latency_s"]["p50"] <= small["latency_s"]["p99"] <= small["latency_s"]["max"]
    assert report["small_baseline"]["statuses"] == {"200": 2}
    for kind in ("big_queries", "big_previews"):
        assert report[kind]["count"] >= 1
        assert set(report[kind]) >= {"statuses", "retry_after_backoffs", "latency_s"}
    assert report["big_queries"]["statuses"].get("200", 0) >= 1
    memory = report["memory"]
    assert 50 < memory["idle_rss_mb"] <= memory["peak_mb"] and not memory["aborted"]
    assert memory["samples"]
    assert report["server_exit_code"] is None and report["requests_unfinished"] == 0
    assert set(report["checks"]) == {
        "small_p99_under_target",
        "small_all_200",
        "rss_under_ceiling",
        "server_survived",
    }
    assert report["run_seconds"] < 5 + 5 + 1
    assert "small p50 / p99 / max" in format_table(report)


def test_retry_after_is_read_from_429_and_503_only() -> None:
    def response(status: int, value: str | None) -> httpx.Response:
        headers = {} if value is None else {"Retry-After": value}
        return httpx.Response(status, headers=headers)

    assert retry_after(response(429, "3")) == 3.0
    assert retry_after(response(503, "0.5")) == 0.5
    assert retry_after(response(429, "Wed, 21 Oct 2015 07:28:00 GMT")) == 1.0
    assert retry_after(response(429, "100000")) == 60.0
    assert retry_after(response(429, None)) is None
    assert retry_after(response(422, "3")) is None


def test_key_sizes_cover_the_cells() -> None:
    assert key_sizes(1_000_000) == (1000, 1000)
    assert key_sizes(100) == (10, 10)
    ka, kb = key_sizes(1001)
    assert ka * kb >= 1001 and abs(ka - kb) <= 1
    assert key_sizes(1) == (1, 1)


class _TooMany(BaseHTTPRequestHandler):
    """Refuses every POST with 429 and ``Retry-After: 1``, as the limits will."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(429)
        self.send_header("Retry-After", "1")
        self.send_header("Content-Type", "application/problem+json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def refusing_url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _TooMany)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_big_analyst_waits_retry_after_and_carries_on(refusing_url: str) -> None:
    run = Run(LoadConfig(duration=2.5, grace=1))
    queries, previews = Outcomes(), Outcomes()
    t0 = time.monotonic()
    with httpx.Client(base_url=refusing_url) as client:
        big_analyst(0, client, run, Costs("1"), queries, previews)
    elapsed = time.monotonic() - t0
    assert 2.4 < elapsed < 3.5
    sent = queries.summary()["count"] + previews.summary()["count"]
    assert sent == 3  # at 0, 1 and 2 s: one per Retry-After, not a busy loop
    assert queries.statuses["429"] + previews.statuses["429"] == 3
    assert queries.backoffs + previews.backoffs == 3
    assert 2.0 < queries.backoff_seconds + previews.backoff_seconds <= 2.6
