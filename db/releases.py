"""Stored releases and the release life cycle in the ledger.

A release goes: :func:`start` (one write transaction: return the stored answer
if this consumer already asked exactly this, else debit the budget and cap,
append the ``release`` entry and a ``pending`` release row — committed before
any data is read) → the caller computes → :func:`complete` (store the body,
append ``release_output`` with the released values) or :func:`fail` (mark it
failed, append ``release_output`` with the failure; nothing is refunded).

A pending release is leased to the request computing it: :func:`start` sets
``lease_expires_at`` and the owner renews it while it computes
(:func:`keep_alive`). If the owner's process dies (SIGKILL, OOM, a lost
machine), the lease runs out; the next request for the same query then finds
the release *abandoned*, fails it (``release_output`` with status ``failed``
and reason ``abandoned``; the debit stays, as for any failure after the debit)
and starts a new one, instead of waiting forever. The check and the takeover
run under the ledger lock, like :func:`renew`, so an owner that is merely slow
either keeps its release or learns, at :func:`complete`, that it lost it
(:class:`Abandoned`) — its values are then never released. This works the same
with one process, several workers or several replicas, and needs no clean
shutdown; it assumes the servers' clocks agree to well within
:data:`LEASE_SECONDS`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import col, delete, select

from db import budgets, ledger, spool
from db.amounts import units_document
from db.budgets import Debited, Refused
from db.engine import Database
from db.errors import InvalidChange, InvalidInput, NotFound
from db.models import Budget, Consumer, Dataset, LedgerEntry, Release

log = logging.getLogger("ruis.db.releases")

LEASE_SECONDS = 10.0
"""How long a pending release stays owned without a renewal."""
RENEW_EVERY_SECONDS = 2.0
"""How often :func:`keep_alive` renews the lease of a release being computed."""
LEDGER_ROWS_MAX_BYTES = 64 * 1024
"""Released rows up to this size (canonical JSON, UTF-8) are copied into the
``release_output`` entry; larger ones stay in the release body only and the entry
carries ``rows_sha256``, ``rows_bytes`` and ``rows_count`` instead."""


class Abandoned(InvalidChange):
    """The release is no longer pending: its lease ran out and another request failed it."""


@dataclass(frozen=True)
class Cached:
    """The same query was answered before: its stored body, and the ``reread`` entry."""

    release_id: str
    body: dict[str, Any]
    entry: LedgerEntry
    remaining_units: int
    from_spool: bool = False
    cumulative_units: int | None = None
    """With a budget per period: the sum over its charged periods."""


@dataclass(frozen=True)
class Started:
    """The cost was debited; the caller must compute and then complete or fail."""

    release_id: str
    debit: Debited


@dataclass(frozen=True)
class InFlight:
    """The same query is being computed by another request; wait for it."""

    release_id: str


def _now() -> datetime:
    return datetime.now(UTC)


def _lease_end(now: datetime | None = None) -> datetime:
    return (now or _now()) + timedelta(seconds=LEASE_SECONDS)


def lease_expired(release: Release, now: datetime | None = None) -> bool:
    """Whether ``release`` is pending and nobody holds its lease any more (abandoned)."""
    if release.status != "pending":
        return False
    return _past(release.lease_expires_at, now)


def _past(end: datetime | None, now: datetime | None = None) -> bool:
    if end is None:  # pending since before leases existed
        return True
    if end.tzinfo is None:  # SQLite keeps no time zone; every time stored is UTC
        end = end.replace(tzinfo=UTC)
    return end <= (now or _now())


def _abandon(
    session: Any,
    release: Release,
    *,
    consumer: str | None,
    dataset: str | None,
    request_id: str | None,
) -> LedgerEntry:
    """Fail a pending release whose owner is gone (no refund), in the caller's transaction."""
    release.status = "failed"
    release.lease_expires_at = None
    session.add(release)
    return ledger.append(
        session,
        kind="release_output",
        actor="system",
        consumer=consumer,
        dataset=dataset,
        request_id=request_id,
        details={
            "release_id": release.id,
            "release_seq": release.ledger_seq,
            "status": "failed",
            "reason": "abandoned",
        },
    )


def new_release_id() -> str:
    """A new, unguessable release id."""
    return "rel_" + secrets.token_hex(12)


def _reread(
    session: Any,
    release: Release,
    *,
    consumer: str,
    dataset: str,
    model: str,
    actor: str,
    request_id: str | None,
    via: str,
) -> LedgerEntry:
    return ledger.append(
        session,
        kind="reread",
        actor=actor,
        consumer=consumer,
        dataset=dataset,
        cost=units_document(model, 0),
        request_id=request_id,
        details={"release_id": release.id, "release_seq": release.ledger_seq, "via": via},
    )


def start(
    db: Database,
    *,
    consumer_id: int,
    consumer: str,
    dataset_id: int,
    dataset: str,
    query_hash: str,
    model: str,
    cost_units: int,
    details: dict[str, Any],
    request_id: str | None,
    period_start: str | None = None,
) -> Cached | Started | InFlight | Refused:
    """Serve the stored answer, or debit and open a new release, in one transaction.

    ``period_start``: with a budget per period, the period the query is charged in.

    A pending release whose computed values wait in the database's spool
    (:mod:`db.spool`: its owner could not store them, or died after spooling them)
    is completed from the spool here and served as stored, never debited again.
    """
    spooled_values = spool.of(db)
    with db.write() as session:
        outcome = _start(
            session,
            spooled_values,
            consumer_id=consumer_id,
            consumer=consumer,
            dataset_id=dataset_id,
            dataset=dataset,
            query_hash=query_hash,
            model=model,
            cost_units=cost_units,
            details=details,
            request_id=request_id,
            period_start=period_start,
        )
    if isinstance(outcome, Cached) and outcome.from_spool and spooled_values is not None:
        spooled_values.remove(outcome.release_id)  # stored now (committed)
    return outcome


def _standing(
    session: Any, consumer_id: int, dataset_id: int, period_start: str | None = None
) -> budgets.Standing:
    budget = session.exec(
        select(Budget).where(Budget.consumer_id == consumer_id, Budget.dataset_id == dataset_id)
    ).first()
    if budget is None:
        return budgets.Standing("pure", 0, None)
    return budgets.standing_in(session, budget, period_start)


def _start(
    session: Any,
    spooled_values: spool.Spool | None,
    *,
    consumer_id: int,
    consumer: str,
    dataset_id: int,
    dataset: str,
    query_hash: str,
    model: str,
    cost_units: int,
    details: dict[str, Any],
    request_id: str | None,
    period_start: str | None = None,
) -> Cached | Started | InFlight | Refused:
    existing = session.exec(
        select(Release).where(
            Release.consumer_id == consumer_id,
            Release.dataset_id == dataset_id,
            Release.query_hash == query_hash,
        )
    ).first()

    def served_again(body: dict[str, Any], *, from_spool: bool = False) -> Cached:
        """``existing`` answered to this request at no cost (ledgered as a re-read)."""
        assert existing is not None
        entry = _reread(
            session,
            existing,
            consumer=consumer,
            dataset=dataset,
            model=model,
            actor=consumer,
            request_id=request_id,
            via="query",
        )
        now = _standing(session, consumer_id, dataset_id, period_start)
        return Cached(
            release_id=existing.id,
            body=body,
            entry=entry,
            remaining_units=now.remaining_units,
            from_spool=from_spool,
            cumulative_units=now.cumulative_units,
        )

    if existing is not None and existing.status == "done" and existing.body_json:
        return served_again(json.loads(existing.body_json))
    if existing is not None and existing.status == "pending":
        spooled = spooled_values.get(existing.id) if spooled_values is not None else None
        if spooled is not None:  # computed, not stored yet: store it now, serve it
            _store(
                session,
                existing,
                _Encoded.of(spooled.body, spooled.output),
                consumer=spooled.consumer,
                dataset=spooled.dataset,
                request_id=spooled.request_id,
            )
            return served_again(spooled.body, from_spool=True)
        if not lease_expired(existing):
            return InFlight(release_id=existing.id)
        # Its owner died while computing it: fail it, then answer this request anew.
        _abandon(session, existing, consumer=consumer, dataset=dataset, request_id=request_id)
    release_id = new_release_id()
    outcome = budgets.debit(
        session,
        consumer_id=consumer_id,
        consumer=consumer,
        dataset_id=dataset_id,
        dataset=dataset,
        model=model,
        cost_units=cost_units,
        actor=consumer,
        details={"release_id": release_id, **details},
        request_id=request_id,
        period_start=period_start,
    )
    if isinstance(outcome, Refused):
        return outcome
    if existing is not None:  # an earlier attempt failed after its debit: replace it
        session.exec(delete(Release).where(col(Release.id) == existing.id))
        session.flush()
    session.add(
        Release(
            id=release_id,
            consumer_id=consumer_id,
            dataset_id=dataset_id,
            query_hash=query_hash,
            status="pending",
            ledger_seq=outcome.entry.seq,
            created_at=_now(),
            lease_expires_at=_lease_end(),
        )
    )
    return Started(release_id=release_id, debit=outcome)


def renew(db: Database, release_id: str) -> bool:
    """Extend the lease of a pending release; False if it is no longer pending (lost)."""
    with db.write() as session:
        release = session.get(Release, release_id)
        if release is None or release.status != "pending":
            return False
        release.lease_expires_at = _lease_end()
        session.add(release)
        return True


@contextmanager
def keep_alive(
    db: Database, release_id: str, *, every: float = RENEW_EVERY_SECONDS
) -> Iterator[None]:
    """Renew the release's lease in a background thread while the block computes it."""
    stop = threading.Event()

    def _renew() -> None:
        while not stop.wait(every):
            try:
                if not renew(db, release_id):
                    return
            except Exception as exc:  # a transient database error: try again next time
                log.warning("could not renew the lease of %s", release_id, exc_info=exc)

    thread = threading.Thread(target=_renew, name=f"lease-{release_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()


def _owned(session: Any, release_id: str) -> Release:
    release: Release | None = session.get(Release, release_id)
    if release is None or release.status != "pending":
        raise Abandoned(f"release {release_id!r} was abandoned while it was computed")
    return release


def ledger_output(output: dict[str, Any]) -> dict[str, Any]:
    """The ``release_output`` details of ``output``: its rows copied when small, else
    committed to by ``rows_sha256`` (SHA-256 of their canonical JSON), ``rows_bytes``
    and ``rows_count`` (the rows themselves stay in the release body)."""
    rows = output.get("rows")
    if rows is None:
        return dict(output)
    encoded = ledger.canonical_json(rows).encode("utf-8")
    if len(encoded) <= LEDGER_ROWS_MAX_BYTES:
        return dict(output)
    details = {k: v for k, v in output.items() if k != "rows"}
    details.update(
        {
            "rows_sha256": hashlib.sha256(encoded).hexdigest(),
            "rows_bytes": len(encoded),
            "rows_count": len(rows),
        }
    )
    return details


@dataclass(frozen=True)
class _Encoded:
    """A release's stored body and its ``release_output`` details, encoded once, before the
    write transaction (a million-cell body is tens of MB of JSON: encoding it under the
    ledger lock would hold every other debit back for seconds)."""

    body_json: str
    output_details: dict[str, Any]

    @classmethod
    def of(cls, body: dict[str, Any], output: dict[str, Any]) -> _Encoded:
        return cls(ledger.canonical_json(body), ledger_output(output))


def _store(
    session: Any,
    release: Release,
    encoded: _Encoded,
    *,
    consumer: str,
    dataset: str,
    request_id: str | None,
) -> LedgerEntry:
    release.status = "done"
    release.lease_expires_at = None
    release.body_json = encoded.body_json
    session.add(release)
    return ledger.append(
        session,
        kind="release_output",
        actor=consumer,
        consumer=consumer,
        dataset=dataset,
        request_id=request_id,
        details={
            "release_id": release.id,
            "release_seq": release.ledger_seq,
            "status": "done",
            **encoded.output_details,
        },
    )


def complete(
    db: Database,
    *,
    release_id: str,
    body: dict[str, Any],
    consumer: str,
    dataset: str,
    output: dict[str, Any],
    request_id: str | None,
) -> LedgerEntry | None:
    """Store the finished release and append its ``release_output`` entry.

    Idempotent: if exactly this body was stored already (from the spool, by the
    sweeper or a retry), stores nothing more and returns None. Raises
    :class:`Abandoned` (and stores nothing) if the release is no longer pending
    otherwise, i.e. its lease ran out and another request failed it.
    """
    encoded = _Encoded.of(body, output)
    with db.write() as session:
        release: Release | None = session.get(Release, release_id)
        if (
            release is not None
            and release.status == "done"
            and release.body_json == encoded.body_json
        ):
            return None
        release = _owned(session, release_id)
        return _store(
            session, release, encoded, consumer=consumer, dataset=dataset, request_id=request_id
        )


def store_spooled(db: Database, item: spool.Spooled) -> LedgerEntry | None:
    """:func:`complete` with spooled values (raises :class:`Abandoned` likewise)."""
    return complete(
        db,
        release_id=item.release_id,
        body=item.body,
        consumer=item.consumer,
        dataset=item.dataset,
        output=item.output,
        request_id=item.request_id,
    )


def expired(db: Database, *, grace: float = 0.0, limit: int = 100) -> list[str]:
    """Ids of pending releases whose lease ran out ``grace`` seconds ago or more (or
    that never had one)."""
    now = _now() - timedelta(seconds=grace)
    with db.read() as session:
        rows = session.exec(
            select(Release.id, Release.lease_expires_at)
            .where(Release.status == "pending")
            .where(col(Release.lease_expires_at).is_(None) | (col(Release.lease_expires_at) <= now))
            .limit(limit)
        ).all()
    return [release_id for release_id, end in rows if _past(end, now)]


def abandon(db: Database, release_id: str) -> bool:
    """Fail ``release_id`` as abandoned (ledgered, no refund) if it is still pending past
    its lease, under the ledger lock; whether it did."""
    with db.write() as session:
        release: Release | None = session.get(Release, release_id)
        if release is None or not lease_expired(release):
            return False
        consumer = session.get(Consumer, release.consumer_id)
        dataset = session.get(Dataset, release.dataset_id)
        _abandon(
            session,
            release,
            consumer=consumer.name if consumer else None,
            dataset=dataset.name if dataset else None,
            request_id=None,
        )
        return True


def fail(
    db: Database,
    *,
    release_id: str,
    consumer: str,
    dataset: str,
    reason: str,
    request_id: str | None,
) -> LedgerEntry:
    """Mark a debited release failed (no refund) and ledger the failure.

    Raises :class:`Abandoned` if it was already failed as abandoned (ledgered then).
    """
    with db.write() as session:
        release = _owned(session, release_id)
        release.status = "failed"
        release.lease_expires_at = None
        session.add(release)
        return ledger.append(
            session,
            kind="release_output",
            actor=consumer,
            consumer=consumer,
            dataset=dataset,
            request_id=request_id,
            details={
                "release_id": release_id,
                "release_seq": release.ledger_seq,
                "status": "failed",
                "reason": reason,
            },
        )


def wait_for(db: Database, release_id: str, *, timeout: float = 120.0) -> Release | None:
    """Poll until the release is done or failed, or abandoned (pending past its lease,
    which :func:`start` will then fail); None if it vanished or timed out."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while time.monotonic() < deadline:
        with db.read() as session:
            release = session.get(Release, release_id)
        if release is None or release.status != "pending" or lease_expired(release):
            return release
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)
    return None


def get(db: Database, release_id: str, *, consumer_id: int) -> Release:
    """A finished release of this consumer (others' are NotFound, as if missing)."""
    with db.read() as session:
        release = session.get(Release, release_id)
    if release is None or release.consumer_id != consumer_id or release.status != "done":
        raise NotFound(f"release {release_id[:48]!r} does not exist")
    return release


def reread(
    db: Database,
    release: Release,
    *,
    consumer: str,
    dataset: str,
    model: str,
    request_id: str | None,
) -> LedgerEntry:
    """Ledger a re-read of a stored release (``GET /v1/queries/{id}``), at no cost."""
    with db.write() as session:
        return _reread(
            session,
            release,
            consumer=consumer,
            dataset=dataset,
            model=model,
            actor=consumer,
            request_id=request_id,
            via="get",
        )


def page(
    db: Database, *, consumer_id: int, after: str | None, limit: int
) -> tuple[list[Release], str | None]:
    """This consumer's finished releases, newest first, by (created_at, id) keyset."""
    with db.read() as session:
        query = select(Release).where(Release.consumer_id == consumer_id, Release.status == "done")
        if after is not None:
            anchor = session.get(Release, after)
            if anchor is None or anchor.consumer_id != consumer_id:
                raise InvalidInput("the cursor is not valid")
            query = query.where(
                (col(Release.created_at) < anchor.created_at)
                | ((col(Release.created_at) == anchor.created_at) & (col(Release.id) < anchor.id))
            )
        rows = list(
            session.exec(
                query.order_by(col(Release.created_at).desc(), col(Release.id).desc()).limit(
                    limit + 1
                )
            ).all()
        )
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None
