"""Engines and transactions: the only place that opens and commits them.

SQLite (the embedded default) runs in WAL mode with foreign keys on; its write
transactions start with ``BEGIN IMMEDIATE`` so that writers queue on the
database lock instead of failing half-way. PostgreSQL write transactions lock
the single ``ledger_head`` row first, which serialises every ledger append
across connections, workers and replicas.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session, select

from db.errors import InvalidInput
from db.models import LedgerHead

SQLITE_BUSY_TIMEOUT_MS = 60_000


def _sqlite_engine(url: str, *, immediate: bool) -> Engine:
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        # Pooled: a connection's PRAGMAs run once, not on every transaction.
        pool_size=8,
        max_overflow=16,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def _refuse_nul(
    _conn: Any, _cursor: Any, _statement: str, parameters: Any, _context: Any, _executemany: bool
) -> None:
    """Refuse text parameters with NUL characters, on every backend alike.

    PostgreSQL cannot store or even compare them (its driver raises DataError,
    which would be a 500); SQLite would accept them. Names, ids and filters come
    from requests, so such a value is an invalid request (422). JSON documents
    are unaffected: their NULs are escaped as ``\\u0000``.
    """
    if _has_nul(parameters):
        raise InvalidInput("text values must not contain NUL characters")


class Database:
    """A configured database: short read transactions and serialised write transactions."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        if self.dialect == "sqlite":
            self._write_engine = _sqlite_engine(url, immediate=True)
            self._read_engine = _sqlite_engine(url, immediate=False)
        elif self.dialect == "postgresql":
            self._write_engine = create_engine(
                # No pre-ping round trip per checkout; connections are recycled instead.
                url,
                pool_size=10,
                max_overflow=20,
                pool_recycle=1800,
            )
            self._read_engine = self._write_engine
        else:
            raise ValueError(f"unsupported database {self.dialect!r}: use sqlite or postgresql")
        for engine in {self._write_engine, self._read_engine}:
            event.listen(engine, "before_cursor_execute", _refuse_nul)

    @property
    def local_directory(self) -> Path | None:
        """The directory of an SQLite database file (None for PostgreSQL or in-memory)."""
        name = make_url(self.url).database if self.dialect == "sqlite" else None
        return Path(name).resolve().parent if name and name != ":memory:" else None

    @property
    def engine(self) -> Engine:
        """The engine that writes (also used by migrations)."""
        return self._write_engine

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session; nothing it does is committed."""
        with Session(self._read_engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read-only session whose every query sees the same committed state (one
        transaction: SQLite WAL keeps its snapshot; PostgreSQL runs it REPEATABLE READ)."""
        with Session(self._read_engine, expire_on_commit=False) as session:
            if self.dialect == "postgresql":
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield session
            session.rollback()

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction holding the ledger lock; commits on success, rolls back on error.

        Every write goes through here, so writes are serialised: on SQLite by
        ``BEGIN IMMEDIATE``, on PostgreSQL by ``SELECT ... FOR UPDATE`` of the
        ledger head row. The session sees a consistent, current state.
        """
        with Session(self._write_engine, expire_on_commit=False) as session:
            try:
                session.exec(select(LedgerHead).where(LedgerHead.id == 1).with_for_update())
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        with self.read() as session:
            session.exec(select(LedgerHead.seq).where(LedgerHead.id == 1)).first()

    def dispose(self) -> None:
        """Close pooled connections."""
        self._write_engine.dispose()
        if self._read_engine is not self._write_engine:
            self._read_engine.dispose()
