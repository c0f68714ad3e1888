"""Stored releases and the release life cycle in the ledger.

A release goes: :func:`start` (one write transaction: return the stored answer
if this consumer already asked exactly this, else debit the budget and cap,
append the ``release`` entry and a ``pending`` release row — committed before
any data is read) → the caller computes → :func:`complete` (store the body,
append ``release_output`` with the released values) or :func:`fail` (mark it
failed, append ``release_output`` with the failure; nothing is refunded).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import col, delete, select

from db import budgets, ledger
from db.budgets import Debited, Refused
from db.engine import Database
from db.errors import InvalidInput, NotFound
from db.models import LedgerEntry, Release


@dataclass(frozen=True)
class Cached:
    """The same query was answered before: its stored body, and the ``reread`` entry."""

    release_id: str
    body: dict[str, Any]
    entry: LedgerEntry


@dataclass(frozen=True)
class Started:
    """The cost was debited; the caller must compute and then complete or fail."""

    release_id: str
    debit: Debited


@dataclass(frozen=True)
class InFlight:
    """The same query is being computed by another request; wait for it."""

    release_id: str


def new_release_id() -> str:
    """A new, unguessable release id."""
    return "rel_" + secrets.token_hex(12)


def _reread(session: Any, release: Release, *, consumer: str, dataset: str, model: str,
            actor: str, request_id: str | None, via: str) -> LedgerEntry:
    return ledger.append(session, kind="reread", actor=actor, consumer=consumer,
                         dataset=dataset, cost=budgets.amount_document(model, 0),
                         request_id=request_id,
                         details={"release_id": release.id, "release_seq": release.ledger_seq,
                                  "via": via})


def start(db: Database, *, consumer_id: int, consumer: str, dataset_id: int, dataset: str,
          query_hash: str, model: str, cost_units: int, details: dict[str, Any],
          request_id: str | None) -> Cached | Started | InFlight | Refused:
    """Serve the stored answer, or debit and open a new release, in one transaction."""
    with db.write() as session:
        existing = session.exec(select(Release).where(
            Release.consumer_id == consumer_id, Release.dataset_id == dataset_id,
            Release.query_hash == query_hash)).first()
        if existing is not None and existing.status == "done" and existing.body_json:
            entry = _reread(session, existing, consumer=consumer, dataset=dataset, model=model,
                            actor=consumer, request_id=request_id, via="query")
            return Cached(release_id=existing.id, body=json.loads(existing.body_json),
                          entry=entry)
        if existing is not None and existing.status == "pending":
            return InFlight(release_id=existing.id)
        release_id = new_release_id()
        outcome = budgets.debit(session, consumer_id=consumer_id, consumer=consumer,
                                dataset_id=dataset_id, dataset=dataset, model=model,
                                cost_units=cost_units, actor=consumer,
                                details={"release_id": release_id, **details},
                                request_id=request_id)
        if isinstance(outcome, Refused):
            return outcome
        if existing is not None:  # an earlier attempt failed after its debit: replace it
            session.exec(delete(Release).where(col(Release.id) == existing.id))
            session.flush()
        session.add(Release(id=release_id, consumer_id=consumer_id, dataset_id=dataset_id,
                            query_hash=query_hash, status="pending",
                            ledger_seq=outcome.entry.seq, created_at=datetime.now(UTC)))
        return Started(release_id=release_id, debit=outcome)


def complete(db: Database, *, release_id: str, body: dict[str, Any], consumer: str,
             dataset: str, output: dict[str, Any], request_id: str | None) -> LedgerEntry:
    """Store the finished release and append its ``release_output`` entry."""
    with db.write() as session:
        release = session.get(Release, release_id)
        if release is None:  # pragma: no cover - created by start()
            raise NotFound(f"release {release_id!r} does not exist")
        release.status = "done"
        release.body_json = ledger.canonical_json(body)
        session.add(release)
        return ledger.append(session, kind="release_output", actor=consumer, consumer=consumer,
                             dataset=dataset, request_id=request_id,
                             details={"release_id": release_id,
                                      "release_seq": release.ledger_seq, "status": "done",
                                      **output})


def fail(db: Database, *, release_id: str, consumer: str, dataset: str, reason: str,
         request_id: str | None) -> LedgerEntry:
    """Mark a debited release failed (no refund) and ledger the failure."""
    with db.write() as session:
        release = session.get(Release, release_id)
        if release is None:  # pragma: no cover - created by start()
            raise NotFound(f"release {release_id!r} does not exist")
        release.status = "failed"
        session.add(release)
        return ledger.append(session, kind="release_output", actor=consumer, consumer=consumer,
                             dataset=dataset, request_id=request_id,
                             details={"release_id": release_id,
                                      "release_seq": release.ledger_seq, "status": "failed",
                                      "reason": reason})


def wait_for(db: Database, release_id: str, *, timeout: float = 120.0) -> Release | None:
    """Poll until the release is done or failed; None if it vanished or timed out."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while time.monotonic() < deadline:
        with db.read() as session:
            release = session.get(Release, release_id)
        if release is None or release.status != "pending":
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


def reread(db: Database, release: Release, *, consumer: str, dataset: str, model: str,
           request_id: str | None) -> LedgerEntry:
    """Ledger a re-read of a stored release (``GET /v1/queries/{id}``), at no cost."""
    with db.write() as session:
        return _reread(session, release, consumer=consumer, dataset=dataset, model=model,
                       actor=consumer, request_id=request_id, via="get")


def page(db: Database, *, consumer_id: int, after: str | None, limit: int
         ) -> tuple[list[Release], str | None]:
    """This consumer's finished releases, newest first, by (created_at, id) keyset."""
    with db.read() as session:
        query = select(Release).where(Release.consumer_id == consumer_id,
                                      Release.status == "done")
        if after is not None:
            anchor = session.get(Release, after)
            if anchor is None or anchor.consumer_id != consumer_id:
                raise InvalidInput("the cursor is not valid")
            query = query.where(
                (col(Release.created_at) < anchor.created_at)
                | ((col(Release.created_at) == anchor.created_at) & (col(Release.id) < anchor.id)))
        rows = list(session.exec(query.order_by(col(Release.created_at).desc(),
                                                col(Release.id).desc()).limit(limit + 1)).all())
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None
