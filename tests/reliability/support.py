"""Helpers of the reliability and security tests: set-up over HTTP, ledger reads, and the
service run as a real ``ruis serve`` subprocess (its own process group, so that a
SIGKILL reaches its workers too)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from db import accounts, budgets, catalog
from db.engine import Database
from db.migrate import upgrade
from tests.conftest import ADMIN_KEY, free_port
from tests.factories import events_metadata, write_events
from tests.support.api import Served, create_consumer, set_budget

REPO = Path(__file__).resolve().parents[2]
RUIS = REPO / ".venv" / "bin" / "ruis"
START_TIMEOUT = 90.0  # three workers importing OpenDP and polars on two cores
STOP_TIMEOUT = 30.0

VISITORS: dict[str, Any] = {
    "dataset": "events",
    "statistic": "unit_count",
    "group_by": ["municipality"],
    "max_partitions_contributed": 3,
    "privacy": {"epsilon": 0.1},
}


@contextmanager
def ana_with_budget(db_url: str, epsilon: Decimal) -> Iterator[Database]:
    """A migrated database holding analyst ``ana`` (consumer 1) with a pure budget of
    ``epsilon`` on dataset ``events`` (dataset 1), for tests that drive ``db.releases``."""
    db = Database(db_url)
    upgrade(db)
    accounts.create_consumer(db, name="ana", role="analyst", actor="test")
    catalog.register(db, metadata={"name": "events"}, actor="test")
    budgets.set_budget(
        db, consumer="ana", dataset="events", model="pure", amount=epsilon, actor="test"
    )
    try:
        yield db
    finally:
        db.dispose()


def distinct_queries(n: int, epsilon: float = 0.1) -> list[dict[str, Any]]:
    """``n`` different queries (so none is served from another's cache) of equal cost."""
    bodies = []
    for i in range(n):
        op = ("ge", "le", "gt", "lt")[i // 24 % 4]
        bodies.append(
            {
                **VISITORS,
                "privacy": {"epsilon": epsilon},
                "where": [{"column": "hour", "op": op, "value": i % 24}],
            }
        )
    assert len({repr(b) for b in bodies}) == n
    return bodies


def setup_events(
    target: str | Served,
    data_dir: Path,
    *,
    analysts: dict[str, float],
    cap: float | None = None,
    devices: int = 300,
) -> dict[str, str]:
    """Write and register ``events``; create the analysts with pure budgets; their keys.
    ``target``: a served app (in-process or uvicorn: the ``server`` fixture) or the URL of
    a server process."""
    write_events(data_dir, devices=devices)
    body = (
        events_metadata(budget_cap={"model": "pure", "epsilon": cap})
        if cap is not None
        else events_metadata()
    )
    keys: dict[str, str] = {}
    if isinstance(target, str):
        opened = httpx.Client(base_url=target, headers=auth(ADMIN_KEY), timeout=60)
    else:
        opened = target.client(ADMIN_KEY)
    with opened as admin:
        response = admin.post("/v1/datasets", json=body)
        assert response.status_code == 201, response.text
        for name, epsilon in analysts.items():
            keys[name] = create_consumer(admin, name)
            set_budget(admin, name, amount=epsilon)
    return keys


def auth(key: str) -> dict[str, str]:
    """The Authorization header for ``key``."""
    return {"Authorization": f"Bearer {key}"}


def ledger_entries(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    """Every ledger entry matching ``params``, following the cursor (bounded)."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        query = {"limit": 1000, **params, **({"cursor": cursor} if cursor else {})}
        response = client.get("/v1/ledger", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the ledger did not end within 100 pages")


def budget_of(client: httpx.Client, consumer: str, dataset: str = "events") -> dict[str, Any]:
    """One budget as ``GET /v1/budgets`` shows it."""
    response = client.get("/v1/budgets", params={"consumer": consumer, "dataset": dataset})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    assert len(items) == 1, items
    return items[0]


def assert_ledger_valid(client: httpx.Client) -> dict[str, Any]:
    """``GET /v1/ledger/verify`` says valid; its body."""
    verification: dict[str, Any] = client.get("/v1/ledger/verify").json()
    assert verification["valid"] is True, verification
    return verification


@dataclass
class ServerProcess:
    """``ruis serve`` in a subprocess, in its own process group."""

    database_url: str
    data_dir: Path
    log_path: Path
    workers: int = 1
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        """Start serving and wait until ``/healthz`` answers (or fail with the log)."""
        env = {
            "RUIS_DATABASE_URL": self.database_url,
            "RUIS_DATA_DIR": str(self.data_dir),
            "RUIS_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(RUIS),
                    "serve",
                    "--port",
                    str(self.port),
                    "--workers",
                    str(self.workers),
                    "--log-level",
                    "warning",
                ],
                env=env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"ruis serve exited with {self.process.returncode}:\n{self.log()}"
                )
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"ruis serve did not answer within {START_TIMEOUT}s:\n{self.log()}")

    def log(self) -> str:
        """The tail of the server's output."""
        return self.log_path.read_text(errors="replace")[-12000:]

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)  # the group we created: the server and workers

    def terminate(self) -> int:
        """SIGTERM (a clean stop: in-flight requests finish); wait; the exit code."""
        assert self.process is not None
        self._signal_group(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"ruis serve did not stop on SIGTERM:\n{self.log()}") from None

    def freeze(self) -> None:
        """SIGSTOP the server and its workers: nothing runs until :meth:`thaw` or :meth:`kill`."""
        self._signal_group(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT: a frozen server runs on."""
        self._signal_group(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the server and its workers at once; reap it."""
        if self.process is None:
            return
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)
        # Workers may outlive the parent for a moment: give the group a moment to go
        # (bounded: orphaned zombies may linger where PID 1 does not reap them).
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def client(self, key: str = ADMIN_KEY, timeout: float = 60) -> httpx.Client:
        """A client for this server (the caller closes it)."""
        return httpx.Client(base_url=self.url, headers=auth(key), timeout=timeout)


@contextmanager
def serving(
    database_url: str, data_dir: Path, log_path: Path, *, workers: int = 1
) -> Iterator[ServerProcess]:
    """A started :class:`ServerProcess`, killed at the end whatever happens."""
    server = ServerProcess(
        database_url=database_url, data_dir=data_dir, log_path=log_path, workers=workers
    ).start()
    try:
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            server.kill()
