"""A ``ruis serve`` subprocess for the benchmark, its memory, and a scratch PostgreSQL database."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
ANALYST = "bench-analyst"
BIG_BUDGET = "1000000"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ruis_command() -> list[str]:
    script = Path(sys.executable).parent / "ruis"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli.main"]


class Server:
    """A running ``ruis serve`` with an admin client; see :func:`serve`."""

    def __init__(
        self, process: subprocess.Popen[bytes], url: str, admin_key: str, log_path: Path
    ) -> None:
        self.process = process
        self.url = url
        self.admin_key = admin_key
        self.log_path = log_path
        self.analyst_key = ""
        self._client: httpx.Client | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, timeout=120, headers={"Authorization": f"Bearer {self.admin_key}"}
        )

    def analyst(self, timeout: float = 600) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {self.analyst_key}"},
        )

    def client(self) -> httpx.Client:
        """A keep-alive analyst client, closed when the server stops."""
        if self._client is None:
            self._client = self.analyst()
        return self._client

    def close_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def setup(self, registrations: list[dict[str, Any]]) -> None:
        """Register the datasets, create the analyst and give it a big budget on each."""
        with self.admin() as client:
            for body in registrations:
                ok_json(client.post("/v1/datasets", json=body))
            created = ok_json(
                client.post("/v1/consumers", json={"name": ANALYST, "role": "analyst"})
            )
            self.analyst_key = str(created["api_key"])
            for body in registrations:
                ok_json(
                    client.put(
                        f"/v1/budgets/{ANALYST}/{body['name']}",
                        json={"model": "pure", "epsilon": float(BIG_BUDGET)},
                    )
                )

    def memory_kb(self) -> dict[str, int]:
        """``VmRSS`` and ``VmHWM`` (peak RSS since start or :meth:`reset_peak`), in kB."""
        values: dict[str, int] = {}
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                name, _, rest = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    values[name] = int(rest.split()[0])
        return values

    def reset_peak(self) -> bool:
        """Reset the server's peak-RSS mark (Linux ``clear_refs`` 5); False if not allowed."""
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as handle:
                handle.write("5")
        except OSError:
            return False
        return True

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def ok_json(response: httpx.Response) -> dict[str, Any]:
    """The JSON body of a successful response; a RuntimeError naming the request otherwise."""
    if response.status_code >= 400:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path} → "
            f"{response.status_code}: {response.text[:500]}"
        )
    value: dict[str, Any] = response.json()
    return value


@contextlib.contextmanager
def serve(
    data_dir: Path,
    database_url: str | None = None,
    *,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
    program: Sequence[str] | None = None,
) -> Iterator[Server]:
    """Start ``ruis serve`` on a free port over ``data_dir``; stop it on exit.

    The ledger is a fresh SQLite file in a temporary directory unless
    ``database_url`` is given; ``env`` adds settings to the server's environment.
    ``program`` replaces ``ruis serve`` with another command taking the same options
    (``--host``, ``--port``, ``--log-level``, ``--workers``), e.g. :mod:`bench.receipt_server`.
    """
    scratch = Path(tempfile.mkdtemp(prefix="ruis-bench-"))
    admin_key = secrets.token_hex(24)
    port = _free_port()
    env = {
        **os.environ,
        "RUIS_DATA_DIR": str(data_dir),
        "RUIS_BOOTSTRAP_ADMIN_KEY": admin_key,
        "RUIS_DATABASE_URL": database_url or f"sqlite:///{scratch / 'ruis.db'}",
        **(env or {}),
    }
    log_path = scratch / "server.log"
    command = [
        *(program if program is not None else [*_ruis_command(), "serve"]),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--workers",
        str(workers),
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
        )
    server = Server(process, f"http://127.0.0.1:{port}", admin_key, log_path)
    try:
        _wait_ready(server)
        yield server
    finally:
        server.close_client()
        _stop(process)
        shutil.rmtree(scratch, ignore_errors=True)


def _wait_ready(server: Server, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"ruis serve exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"ruis serve did not become ready:\n{server.log_tail()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except Exception:
        return False


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database ``ruis_bench_<random>`` on the local PostgreSQL, dropped on exit."""
    import psycopg

    name = f"ruis_bench_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
