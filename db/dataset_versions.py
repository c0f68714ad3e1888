"""Dataset versions, retirement, and the cap shared by every dataset over one file.

A dataset has versions 1, 2, …: each is the metadata and the file fingerprint it
was added with (``dataset_versions``); the newest is what ``datasets.metadata_json``
and ``file_json`` hold, and what queries run on. Adding one is ledgered
``dataset_version_added``; what a version may change is checked by the caller
(``api/dataset_versions.py``: only the keys of date columns and the range of derived
date-like columns may grow, and ``max_rows`` may change).

A retired dataset (``status`` = ``retired``) answers no query or preview again; its
history (ledger, releases, versions, budgets) stays. Retiring is ledgered
``dataset_retired``.

A *file* is known by its identities (:func:`identities`): its normalised path and its
content SHA-256, and those of a CSV's source. A dataset registered over a file that a
dataset already registered (any of its versions) shares: it joins that dataset's *cap
group*, whose cap is held in the row of the group's first dataset (``cap_dataset_id``
names it). Every debit charges that one row with a conditional update
(:func:`db.budgets.debit`), so all the views of one file together never spend more than
its cap. A version whose file belongs to another cap group is refused.
"""

from __future__ import annotations

import json
import posixpath
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from db import ledger
from db.engine import Database
from db.errors import InvalidChange, NotFound
from db.models import Dataset, DatasetVersion

RETIRED = "retired"


def _now() -> datetime:
    return datetime.now(UTC)


def identities(metadata: dict[str, Any], fingerprint: dict[str, Any] | None) -> set[str]:
    """What identifies a dataset version's file: ``path:`` its normalised path (relative
    to the data directory) and ``sha256:`` its content hash, and those of a CSV source;
    for a Spark dataset's listing, those of each of its files too (so that any dataset
    over one of them shares the cap)."""
    found: set[str] = set()
    listed = list((fingerprint or {}).get("files") or [])
    for document in (metadata, fingerprint, (fingerprint or {}).get("source"), *listed):
        if not document:
            continue
        if document.get("path"):
            found.add("path:" + posixpath.normpath(str(document["path"])))
        if document.get("sha256"):
            found.add("sha256:" + str(document["sha256"]))
    return found


def holder_id(dataset: Dataset) -> int:
    """The id of the dataset whose row holds ``dataset``'s cap (its own, or its group's)."""
    return dataset.cap_dataset_id if dataset.cap_dataset_id is not None else (dataset.id or 0)


def cap_holder(session: Session, dataset: Dataset) -> Dataset:
    """The dataset whose row holds ``dataset``'s cap (``dataset`` itself unless it shares)."""
    if dataset.cap_dataset_id is None:
        return dataset
    holder = session.get(Dataset, dataset.cap_dataset_id)
    if holder is None:  # pragma: no cover - guarded by the foreign key
        raise NotFound(f"the cap of dataset {dataset.name!r} is missing")
    return holder


def file_groups(
    session: Session, found: set[str], *, besides: int | None = None
) -> dict[int, list[str]]:
    """The cap groups (holder id → names of their datasets) whose files share one of
    ``found``'s identities, over every version of every dataset (but ``besides``)."""
    rows = session.exec(
        select(DatasetVersion, Dataset).join(Dataset, col(Dataset.id) == DatasetVersion.dataset_id)
    ).all()
    groups: dict[int, list[str]] = {}
    for version, dataset in rows:
        if besides is not None and dataset.id == besides:
            continue
        metadata = json.loads(version.metadata_json)
        fingerprint = json.loads(version.file_json) if version.file_json else None
        if identities(metadata, fingerprint) & found:
            names = groups.setdefault(holder_id(dataset), [])
            if dataset.name not in names:
                names.append(dataset.name)
    return groups


def group_names(session: Session, dataset: Dataset) -> list[str]:
    """The names of every dataset that shares ``dataset``'s cap (itself included), sorted."""
    holder = holder_id(dataset)
    rows = session.exec(
        select(Dataset.name).where(
            (col(Dataset.id) == holder) | (col(Dataset.cap_dataset_id) == holder)
        )
    ).all()
    return sorted(rows)


def add_first(session: Session, dataset: Dataset) -> None:
    """Record version 1 of a dataset being registered (in the caller's transaction)."""
    session.add(
        DatasetVersion(
            dataset_id=dataset.id or 0,
            version=1,
            metadata_json=dataset.metadata_json,
            file_json=dataset.file_json,
            created_at=dataset.created_at,
        )
    )


def sync_current(session: Session, dataset: Dataset) -> None:
    """Copy the dataset's fingerprint to its current version's row (a first fingerprint
    or a reinstatement records the file that version is read from)."""
    row = session.exec(
        select(DatasetVersion).where(
            DatasetVersion.dataset_id == dataset.id, DatasetVersion.version == dataset.version
        )
    ).first()
    if row is not None:
        row.file_json = dataset.file_json
        session.add(row)


def _get(session: Session, name: str) -> Dataset:
    dataset = session.exec(select(Dataset).where(Dataset.name == name)).first()
    if dataset is None:
        raise NotFound(f"dataset {name!r} does not exist")
    return dataset


def refuse_retired(dataset: Dataset, doing: str) -> None:
    """Raise the 409 if ``dataset`` is retired (nothing about it changes any more)."""
    if dataset.status == RETIRED:
        raise InvalidChange(f"the dataset {dataset.name!r} is retired: {doing} is not possible")


def _besides_path(metadata: dict[str, Any]) -> dict[str, Any]:
    """The metadata but its file's name (a copy of a file under another name is the same)."""
    return {key: value for key, value in metadata.items() if key != "path"}


def add_version(
    db: Database,
    *,
    name: str,
    metadata: dict[str, Any],
    fingerprint: dict[str, Any],
    expected_version: int,
    actor: str,
    request_id: str | None = None,
) -> Dataset:
    """Make ``metadata`` (checked by the caller) over the file ``fingerprint`` the newest
    version of ``name``; ledgers ``dataset_version_added``.

    Refused (409, nothing stored) when the dataset is retired, when another version was
    added since the caller read version ``expected_version``, when the file and metadata
    are the current version's (same SHA-256: the same queries would be charged again), or
    when it belongs to another cap group (a dataset with a separate cap over the same
    people). A suspended dataset becomes active: its new file was just checked in full.
    """
    with db.write() as session:
        dataset = _get(session, name)
        refuse_retired(dataset, "adding a version")
        if dataset.version != expected_version:
            raise InvalidChange(
                f"version {dataset.version} of {name!r} was added meanwhile; try again"
            )
        others = file_groups(session, identities(metadata, fingerprint), besides=dataset.id)
        foreign = sorted(n for h, names in others.items() if h != holder_id(dataset) for n in names)
        if foreign:
            raise InvalidChange(
                f"this file is registered as dataset {foreign[0]!r}, which has a separate "
                "cap: a version over it would spend on the same people twice"
            )
        previous = {"version": dataset.version, "file": _loads(dataset.file_json)}
        same = fingerprint.get("sha256")
        if (
            same
            and same == (previous["file"] or {}).get("sha256")
            and _besides_path(metadata) == _besides_path(_loads(dataset.metadata_json))
        ):
            raise InvalidChange(
                f"the file and metadata are the same as version {dataset.version} of "
                f"{name!r} (same SHA-256): a new version would charge the same queries again "
                "on the same data"
            )
        dataset.version += 1
        dataset.metadata_json = ledger.canonical_json(metadata)
        dataset.file_json = ledger.canonical_json(fingerprint)
        dataset.status = "active"
        dataset.suspended_reason = None
        session.add(dataset)
        session.add(
            DatasetVersion(
                dataset_id=dataset.id or 0,
                version=dataset.version,
                metadata_json=dataset.metadata_json,
                file_json=dataset.file_json,
                created_at=_now(),
            )
        )
        session.flush()
        ledger.append(
            session,
            kind="dataset_version_added",
            actor=actor,
            dataset=name,
            request_id=request_id,
            details={
                "version": dataset.version,
                "metadata": metadata,
                "file": fingerprint,
                "previous": previous,
            },
        )
        return dataset


def retire(db: Database, *, name: str, actor: str, request_id: str | None = None) -> Dataset:
    """Retire ``name``: no query or preview is answered on it again; ledgers ``dataset_retired``.

    A dataset retired already is a 409 (nothing ledgered). Its cap, if others share it,
    keeps holding for them: what was spent on the file stays spent.
    """
    with db.write() as session:
        dataset = _get(session, name)
        refuse_retired(dataset, "retiring it again")
        previous = dataset.status
        dataset.status = RETIRED
        dataset.retired_at = _now()
        session.add(dataset)
        session.flush()
        ledger.append(
            session,
            kind="dataset_retired",
            actor=actor,
            dataset=name,
            request_id=request_id,
            details={"version": dataset.version, "previous_status": previous},
        )
        return dataset


def list_versions(db: Database, dataset_id: int) -> list[DatasetVersion]:
    """Every version of one dataset, oldest first."""
    with db.read() as session:
        return list(
            session.exec(
                select(DatasetVersion)
                .where(DatasetVersion.dataset_id == dataset_id)
                .order_by(col(DatasetVersion.version))
            ).all()
        )


def cap_view(db: Database, dataset: Dataset) -> tuple[Dataset, list[str]]:
    """The row holding ``dataset``'s cap and the names of the datasets sharing it."""
    with db.read() as session:
        return cap_holder(session, dataset), group_names(session, dataset)


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else None
