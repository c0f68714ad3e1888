"""Fixtures: a temp data dir, each database (SQLite always, PostgreSQL when reachable,
required in CI), and the real app: in-process by default (``server``, see
:mod:`tests.support.inprocess`), served by uvicorn on a free port for tests marked
``live`` (the HTTP edge, sockets, disconnects, subprocesses that need a URL)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine, create_engine

from api.app import create_app
from api.server import EdgeLimits, server_config
from api.settings import Settings
from db.engine import Database
from db.migrate import upgrade
from tests.support.inprocess import InProcessApp, start_app

PG_ADMIN_URL = os.environ.get(
    "RUIS_TEST_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ADMIN_KEY = "test-admin-key-Vq7Lw2Zr9Xk4Tn8Pd3Hs"


def postgres_available() -> bool:
    """Whether the test PostgreSQL server answers."""
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


_PG_UP = postgres_available()
IN_CI = os.environ.get("CI") == "true"
REQUIRE_PG = IN_CI or os.environ.get("RUIS_REQUIRE_POSTGRES") == "1"


def require_tool(available: bool, what: str, *, required: bool = IN_CI) -> None:
    """Skip a test that needs ``what`` (a program, a service) when it is not available on a
    developer's machine; fail it when ``required`` (in CI, where it must run:
    ``scripts/system-deps.sh`` and ``scripts/ensure-postgres.sh`` provide it there)."""
    if available:
        return
    if required:
        pytest.fail(f"{what} is required here (CI) but is not available")
    pytest.skip(f"{what} is not available")


def require_postgres(available: bool, what: str = "PostgreSQL") -> None:
    """Skip a PostgreSQL test when ``what`` is not available on a developer's machine; fail
    it in CI (``REQUIRE_PG``), where it must run."""
    require_tool(available, f"{what} ({PG_ADMIN_URL})", required=REQUIRE_PG)


def _pg_database(template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database (a copy of ``template`` when given), dropped afterwards."""
    name = "ruis_test_" + uuid.uuid4().hex[:12]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database file migrated to head, copied for each service (see ``db_url``)."""
    path = tmp_path_factory.mktemp("template") / "ruis.db"
    database = Database(f"sqlite:///{path}")
    upgrade(database)
    database.dispose()
    return path


@pytest.fixture(scope="session")
def migrated_postgres() -> Iterator[str]:
    """The name of a PostgreSQL database migrated to head, the template of each service's
    database (see ``db_url``)."""
    for url in _pg_database():
        database = Database(url)
        upgrade(database)
        database.dispose()  # a template must have no open connections
        yield url.rsplit("/", 1)[1]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database URL on each backend: empty, or, for a test that runs the service
    (it uses ``settings``), already migrated to head (a copy of a template migrated once per
    session: what the service's start-up would have made of the empty one; start-up still
    runs the migrations, which then find nothing to do, and creates the bootstrap admin)."""
    migrated = "settings" in request.fixturenames
    if request.param == "sqlite":
        path = tmp_path / "ruis.db"
        if migrated:
            shutil.copyfile(request.getfixturevalue("migrated_sqlite"), path)
        yield f"sqlite:///{path}"
        return
    require_postgres(_PG_UP)
    yield from _pg_database(request.getfixturevalue("migrated_postgres") if migrated else None)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty data directory."""
    path = tmp_path / "data"
    path.mkdir()
    return path


def free_port() -> int:
    """A TCP port that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RunningServer:
    """The app served by uvicorn in a thread."""

    url: str
    settings: Settings
    server: uvicorn.Server
    thread: threading.Thread
    clients: list[httpx.Client] = field(default_factory=list)
    transport: None = None
    """No transport to inject: clients reach this server over the network at ``url``."""

    @property
    def app(self) -> FastAPI:
        """The application being served."""
        app: FastAPI = self.server.config.app
        return app

    def client(self, key: str | None = None) -> httpx.Client:
        """An HTTP client, authenticated with ``key`` when given (closed with the server)."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=60)
        self.clients.append(client)
        return client

    def stop(self) -> None:
        """Close the clients, stop serving and wait for the thread."""
        for client in self.clients:
            client.close()
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_server(settings: Settings, limits: EdgeLimits | None = None) -> RunningServer:
    """Serve ``create_app(settings)`` on a free port until stopped, with the HTTP edge
    ``ruis serve`` has (``limits``: the defaults unless given)."""
    port = free_port()
    config = server_config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        limits=limits or EdgeLimits(),
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    return RunningServer(
        url=f"http://127.0.0.1:{port}", settings=settings, server=server, thread=thread
    )


@pytest.fixture
def settings(db_url: str, data_dir: Path) -> Settings:
    """Settings for a fresh service on each backend, with a bootstrap admin key."""
    return Settings(database_url=db_url, data_dir=data_dir, bootstrap_admin_key=ADMIN_KEY)


Service = InProcessApp | RunningServer
"""The app a test talks to: in-process, or served by uvicorn (same ``settings``, ``app``,
``url``, ``client(key)``, ``transport`` for the Python client)."""


@pytest.fixture
def server(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Service]:
    """The real app: in-process, or served over HTTP on a free port when the test is
    marked ``live``."""
    running: Service
    if request.node.get_closest_marker("live"):
        running = start_server(settings)
    else:
        running = start_app(settings)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def admin(server: Service) -> Iterator[httpx.Client]:
    """A client authenticated as the bootstrap admin."""
    yield server.client(ADMIN_KEY)


@pytest.fixture
def engine(server: Service) -> Iterator[Engine]:
    """A plain SQLAlchemy engine on the server's database: an insider's, for tampering."""
    opened = create_engine(server.settings.database_url)
    yield opened
    opened.dispose()
