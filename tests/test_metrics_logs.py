"""Operations: /metrics (Prometheus), structured JSON logs, /readyz."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.logs import JsonFormatter
from api.settings import Settings
from tests.conftest import ADMIN_KEY, Service, free_port
from tests.support.api import analyst, register_events
from tests.support.inprocess import start_app

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
SUM: dict[str, Any] = {
    "dataset": "events",
    "statistic": "sum",
    "column": "dwell_minutes",
    "group_by": ["municipality"],
    "privacy": {"epsilon": 0.5},
}


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _analyst(server: Service, admin: httpx.Client, epsilon: float = 1.0) -> httpx.Client:
    register_events(server, admin, budget_cap={"model": "pure", "epsilon": 5})
    return analyst(server, admin, amount=epsilon)


def test_metrics_count_routes_releases_refusals_and_budgets(
    server: Service, admin: httpx.Client
) -> None:
    ana = _analyst(server, admin)
    assert ana.post("/v1/queries", json=SUM).status_code == 200
    assert ana.post("/v1/queries", json=SUM).status_code == 200  # cached: no new spending
    assert ana.post("/v1/queries", json={**SUM, "privacy": {"epsilon": 0.7}}).status_code == 409
    assert ana.post("/v1/queries", json={**SUM, "column": "nope"}).status_code == 422
    assert admin.get("/v1/consumers/ana/keys").status_code == 200
    assert admin.get("/v1/consumers/nobody/keys").status_code == 404
    assert admin.get("/no/such/path").status_code == 404

    response = server.client().get("/metrics")  # open: no RUIS_METRICS_TOKEN
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    requests = "ruis_http_requests_total"
    assert _value(samples, requests, method="POST", route="/v1/queries", status="200") == 2
    assert (
        _value(samples, requests, method="GET", route="/v1/consumers/{name}/keys", status="200")
        == 1
    )
    assert (
        _value(samples, requests, method="GET", route="/v1/consumers/{name}/keys", status="404")
        == 1
    )
    assert _value(samples, requests, method="GET", route="<unmatched>", status="404") == 1
    assert "nobody" not in response.text and "/no/such" not in response.text  # templates only
    assert _value(samples, "ruis_release_duration_seconds_count") == 2
    assert _value(samples, "ruis_queries_refused_total", reason="budget_exceeded") == 1
    assert _value(samples, "ruis_queries_refused_total", reason="invalid_query") == 1
    budget = {"consumer": "ana", "dataset": "events", "model": "pure", "unit": "epsilon"}
    assert _value(samples, "ruis_budget_total", **budget) == 1
    assert _value(samples, "ruis_budget_spent", **budget) == 0.5
    cap = {"dataset": "events", "model": "pure", "unit": "epsilon"}
    assert _value(samples, "ruis_dataset_cap_total", **cap) == 5
    assert _value(samples, "ruis_dataset_cap_spent", **cap) == 0.5
    assert _value(samples, "ruis_budget_scrape_ok") == 1
    assert "GM0" not in response.text  # no released keys or values, only names and amounts


@SQLITE_ONLY
def test_metrics_token(settings: Settings) -> None:
    token = "metrics-token-0123456789"
    running = start_app(dataclasses.replace(settings, metrics_token=token))
    try:
        url = "/metrics"
        anonymous = running.client()
        missing = anonymous.get(url)
        assert missing.status_code == 401
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.headers["www-authenticate"] == "Bearer"
        assert anonymous.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert (
            anonymous.get(url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}).status_code == 401
        )  # an API key is not the metrics token
        granted = anonymous.get(url, headers={"Authorization": f"Bearer {token}"})
        assert granted.status_code == 200 and "ruis_http_requests_total" in granted.text
    finally:
        running.stop()
    assert token not in repr(running.settings)


@SQLITE_ONLY
def test_access_log_lines_carry_the_request_and_no_released_values(
    server: Service, admin: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    ana = _analyst(server, admin)
    caplog.set_level(logging.DEBUG)
    release = ana.post("/v1/queries", json=SUM, headers={"X-Request-ID": "trace-42"})
    assert release.status_code == 200
    records = [
        r
        for r in caplog.records
        if r.name == "ruis.access" and getattr(r, "request_id", None) == "trace-42"
    ]
    assert len(records) == 1
    line = json.loads(JsonFormatter().format(records[0]))
    assert set(line) == {
        "time",
        "level",
        "logger",
        "message",
        "request_id",
        "method",
        "route",
        "status",
        "duration_ms",
        "consumer",
    }
    assert line["time"].endswith("Z") and line["level"] == "info"
    assert (line["method"], line["route"], line["status"], line["consumer"]) == (
        "POST",
        "/v1/queries",
        200,
        "ana",
    )
    assert line["message"] == "POST /v1/queries 200" and line["duration_ms"] > 0
    ledgered = admin.get("/v1/ledger", params={"kind": "release"}).json()["items"]
    assert ledgered[-1]["request_id"] == "trace-42"
    formatter = JsonFormatter()
    everything = "\n".join(formatter.format(r) for r in caplog.records)
    for _, value in release.json()["rows"]:  # noisy sums: long, distinctive floats
        assert json.dumps(value) not in everything


def _parse(value: str) -> None:
    raise ValueError(f"could not parse {value!r}")


def test_json_formatter_keeps_exception_type_and_stack_not_its_message() -> None:
    private = "-".join(["GM0363", "private", "value"])
    try:
        _parse(private)
    except ValueError:
        record = logging.LogRecord(
            "ruis.release",
            logging.ERROR,
            __file__,
            1,
            "release %s failed",
            ("rel_1",),
            sys.exc_info(),
        )
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "release rel_1 failed" and line["level"] == "error"
    assert line["exception"] == "builtins.ValueError"
    assert "test_json_formatter" in line["stack"]
    assert private not in json.dumps(line)  # the stack shows code, not runtime values


def test_readyz_checks_the_database_and_the_data_dir(
    server: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    ready = server.client().get("/readyz")
    assert ready.status_code == 200
    # An SQLite database's directory is checked for free space too; PostgreSQL's is remote.
    local = {"database_dir": "ok"} if server.settings.database_url.startswith("sqlite") else {}
    assert ready.json() == {
        "status": "ok",
        "checks": {"database": "ok", "data_dir": "ok", **local, "datasets": "ok"},
    }

    database = server.app.state.db

    def unreachable() -> None:
        raise ConnectionRefusedError("the database is down")

    monkeypatch.setattr(database, "ping", unreachable)
    down = server.client().get("/readyz")
    assert down.status_code == 503
    assert down.json()["checks"] == {
        "database": "unavailable: ConnectionRefusedError",
        "data_dir": "ok",
        **local,
    }
    monkeypatch.undo()

    server.settings.data_dir.rename(server.settings.data_dir.with_name("moved"))
    gone = server.client().get("/readyz")
    assert gone.status_code == 503
    assert gone.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "data_dir": "unavailable", **local, "datasets": "ok"},
    }
    assert server.client().get("/healthz").status_code == 200  # alive, just not ready


@pytest.mark.slow  # ruis serve with workers, in a subprocess
def test_serve_with_workers_sums_metrics_and_logs_json(tmp_path: Path, data_dir: Path) -> None:
    """``ruis serve --workers 2``: JSON log lines on stderr, counters summed over workers."""
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_stale.db").write_bytes(b"left by an earlier run")
    env = {
        **os.environ,
        "RUIS_DATA_DIR": str(data_dir),
        "RUIS_DATABASE_URL": f"sqlite:///{tmp_path / 'ruis.db'}",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    env.pop("RUIS_METRICS_TOKEN", None)
    stderr = (tmp_path / "stderr.log").open("w+")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("ruis")),
            "serve",
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "no server"
            time.sleep(0.2)
        requests = 30
        for _ in range(requests):  # new connections: the kernel spreads them over workers
            assert httpx.get(f"{url}/healthz").status_code == 200
        samples = _samples(httpx.get(f"{url}/metrics").text)
        assert (
            _value(
                samples, "ruis_http_requests_total", method="GET", route="/healthz", status="200"
            )
            == requests
        )
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    stderr.seek(0)
    lines = [json.loads(line) for line in stderr.read().splitlines() if line.strip()]
    stderr.close()
    access = [line for line in lines if line["logger"] == "ruis.access"]
    assert len([a for a in access if a["route"] == "/healthz"]) == requests
    assert all(a["request_id"].startswith("req_") and a["status"] == 200 for a in access)
    assert any(line["logger"].startswith("uvicorn") for line in lines)


@SQLITE_ONLY
def test_an_unexpected_error_is_a_500_problem_with_the_request_id(
    server: Service,
    admin: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    database = server.app.state.db
    private = "-".join(["GM0363", "private", "value"])  # (stacks show code, not values)

    def broken() -> None:
        raise RuntimeError(f"failed on {private}")

    monkeypatch.setattr(database, "read", broken)
    caplog.set_level(logging.INFO)
    response = admin.get("/v1/budgets", headers={"X-Request-ID": "fail-1"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "fail-1"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "internal-error",
        "title": "Internal server error",
        "status": 500,
        "detail": "the server failed to handle this request",
    }
    assert private not in response.text
    monkeypatch.undo()
    samples = _samples(server.client().get("/metrics").text)
    assert (
        _value(samples, "ruis_http_requests_total", method="GET", route="/v1/budgets", status="500")
        == 1
    )
    logged = [r for r in caplog.records if getattr(r, "request_id", None) == "fail-1"]
    assert {r.name for r in logged} >= {"ruis.api", "ruis.access"}
    assert all(private not in JsonFormatter().format(r) for r in logged)
