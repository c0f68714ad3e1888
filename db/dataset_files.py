"""A dataset's file: its recorded fingerprint and its suspension (no file is read here).

The fingerprint (``Dataset.file_json``) is the document ``api/dataset_files.py``
builds from file metadata: the path queries read, its size, modification time,
footer row count, schema and content SHA-256 (and, for a CSV, the source file's).
A dataset whose file no longer matches it is *suspended*: every query and preview
on it is refused until an admin reinstates it with a new fingerprint. Each change
is ledgered once (``dataset_fingerprinted``, ``dataset_suspended``,
``dataset_reinstated``); a query refused because of it is a ``refused`` entry
with cost 0 and reason ``dataset_unavailable``.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from db import dataset_versions, ledger
from db.amounts import units_document
from db.engine import Database
from db.errors import NotFound
from db.models import Dataset

ACTIVE = "active"
SUSPENDED = "suspended"


def fingerprint_of(dataset: Dataset) -> dict[str, Any] | None:
    """The recorded fingerprint of the dataset's file, or None if none was recorded yet."""
    if dataset.file_json is None:
        return None
    value: dict[str, Any] = json.loads(dataset.file_json)
    return value


def _get(session: Session, name: str) -> Dataset:
    dataset = session.exec(select(Dataset).where(Dataset.name == name)).first()
    if dataset is None:
        raise NotFound(f"dataset {name!r} does not exist")
    return dataset


def record(
    db: Database,
    *,
    name: str,
    fingerprint: dict[str, Any],
    actor: str,
    request_id: str | None = None,
) -> Dataset:
    """Store the first fingerprint of a dataset that has none; ledgers ``dataset_fingerprinted``.

    If another request recorded one meanwhile, that one is kept and returned
    unchanged (nothing is ledgered), so concurrent first releases agree.
    """
    with db.write() as session:
        dataset = _get(session, name)
        if dataset.file_json is not None:
            return dataset
        dataset.file_json = ledger.canonical_json(fingerprint)
        session.add(dataset)
        dataset_versions.sync_current(session, dataset)
        ledger.append(
            session,
            kind="dataset_fingerprinted",
            actor=actor,
            dataset=name,
            request_id=request_id,
            details={"file": fingerprint},
        )
        session.flush()
        return dataset


def suspend(
    db: Database,
    *,
    name: str,
    reason: str,
    observed: dict[str, Any] | None,
    actor: str,
    request_id: str | None = None,
) -> bool:
    """Suspend the dataset ``name``; ledgers ``dataset_suspended`` once.

    Returns True if this call suspended it, False if it already was suspended
    (then nothing changes and nothing is ledgered). ``observed`` is what the
    check saw (file metadata only), ledgered next to the recorded fingerprint.
    """
    with db.write() as session:
        dataset = _get(session, name)
        if dataset.status in (SUSPENDED, dataset_versions.RETIRED):
            return False
        dataset.status = SUSPENDED
        dataset.suspended_reason = reason
        session.add(dataset)
        ledger.append(
            session,
            kind="dataset_suspended",
            actor=actor,
            dataset=name,
            request_id=request_id,
            details={"reason": reason, "recorded": fingerprint_of(dataset), "observed": observed},
        )
        return True


def reinstate(
    db: Database,
    *,
    name: str,
    fingerprint: dict[str, Any],
    actor: str,
    request_id: str | None = None,
) -> Dataset:
    """Make ``name`` active with a new fingerprint; ledgers ``dataset_reinstated``.

    The entry holds the previous status, the suspension reason and both the old
    and the new fingerprint. The caller has re-run the registration check.
    """
    with db.write() as session:
        dataset = _get(session, name)
        dataset_versions.refuse_retired(dataset, "reinstating it")
        previous = {
            "status": dataset.status,
            "suspended_reason": dataset.suspended_reason,
            "file": fingerprint_of(dataset),
        }
        dataset.status = ACTIVE
        dataset.suspended_reason = None
        dataset.file_json = ledger.canonical_json(fingerprint)
        session.add(dataset)
        dataset_versions.sync_current(session, dataset)
        ledger.append(
            session,
            kind="dataset_reinstated",
            actor=actor,
            dataset=name,
            request_id=request_id,
            details={"previous": previous, "file": fingerprint},
        )
        session.flush()
        return dataset


def refuse_unavailable(
    db: Database,
    *,
    consumer: str,
    dataset: str,
    model: str,
    asked_units: int,
    details: dict[str, Any],
    request_id: str | None = None,
    reason: str = "dataset_unavailable",
) -> None:
    """Ledger a query refused because its dataset is suspended (cost 0, nothing charged);
    ``reason`` ``dataset_retired`` when it is retired."""
    with db.write() as session:
        ledger.append(
            session,
            kind="refused",
            actor=consumer,
            consumer=consumer,
            dataset=dataset,
            cost=units_document(model, 0),
            request_id=request_id,
            details={
                **details,
                "reason": reason,
                "asked": units_document(model, asked_units),
            },
        )


def count_suspended(db: Database) -> int:
    """How many datasets are suspended."""
    with db.read() as session:
        count = session.exec(
            select(func.count()).select_from(Dataset).where(Dataset.status == SUSPENDED)
        ).one()
        return int(count)
