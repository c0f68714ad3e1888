"""Datasets: registering, listing, reinstating, versioning and retiring them; public metadata
only, never the data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from api import dataset_files
from api import dataset_versions as versions
from api.schemas import DatasetPublic, DatasetVersionCreate, DatasetVersionPublic, Page
from api.services import Actor
from db import catalog, dataset_versions
from db.dataset_files import fingerprint_of
from db.engine import Database
from db.models import Dataset, DatasetVersion
from privacy.metadata import DatasetMetadata


def dataset_public(db: Database, dataset: Dataset, *, full: bool = False) -> DatasetPublic:
    """The public view of a stored dataset; ``full`` adds the suspension reason, the
    file's fingerprint and the datasets sharing its cap (for admins and auditors, not
    analysts)."""
    metadata = catalog.metadata_of(dataset)
    holder, sharing = dataset_versions.cap_view(db, dataset)
    metadata["budget_cap"] = catalog.cap_document(holder)
    extra: dict[str, Any] = (
        {
            "suspended_reason": dataset.suspended_reason,
            "file": fingerprint_of(dataset),
            "cap_shared_with": [n for n in sharing if n != dataset.name] or None,
        }
        if full
        else {}
    )
    return DatasetPublic(
        **metadata,
        created_at=dataset.created_at,
        status=dataset.status,
        version=dataset.version,
        versions=[
            _version_public(v, full=full)
            for v in dataset_versions.list_versions(db, dataset.id or 0)
        ],
        retired_at=dataset.retired_at,
        **extra,
    )


def _version_public(version: DatasetVersion, *, full: bool) -> DatasetVersionPublic:
    fingerprint = json.loads(version.file_json) if version.file_json else {}
    return DatasetVersionPublic(
        version=version.version,
        path=str(json.loads(version.metadata_json)["path"]),
        created_at=version.created_at,
        rows=fingerprint.get("rows") if full else None,
        sha256=fingerprint.get("sha256") if full else None,
    )


def add_version(
    db: Database,
    data_dir: Path,
    name: str,
    body: DatasetVersionCreate,
    *,
    actor: Actor,
    request_id: str | None = None,
) -> DatasetPublic:
    """Check and add a new version of ``name`` (its file, grown date keys)."""
    dataset = versions.add_version(
        db, data_dir, name, body, actor=actor.name, request_id=request_id
    )
    return dataset_public(db, dataset, full=True)


def retire_dataset(
    db: Database, name: str, *, actor: Actor, request_id: str | None = None
) -> DatasetPublic:
    """Retire ``name``: no new query or preview; its history is kept."""
    dataset = dataset_versions.retire(db, name=name, actor=actor.name, request_id=request_id)
    return dataset_public(db, dataset, full=True)


def register_dataset(
    db: Database,
    data_dir: Path,
    body: DatasetMetadata,
    *,
    actor: Actor,
    request_id: str | None = None,
) -> DatasetPublic:
    """Check the file ``body`` declares (a CSV is converted) and register it."""
    dataset = dataset_files.register(db, data_dir, body, actor=actor.name, request_id=request_id)
    return dataset_public(db, dataset, full=True)


def reinstate_dataset(
    db: Database, data_dir: Path, name: str, *, actor: Actor, request_id: str | None = None
) -> DatasetPublic:
    """Re-check a dataset's current file in full and make it active again."""
    dataset = dataset_files.reinstate(db, data_dir, name, actor=actor.name, request_id=request_id)
    return dataset_public(db, dataset, full=True)


def _visible_to(actor: Actor) -> int | None:
    return actor.consumer_id if actor.is_analyst else None


def list_datasets(db: Database, *, actor: Actor) -> Page[DatasetPublic]:
    """The datasets ``actor`` may see (an analyst: those it holds a budget on)."""
    visible_to = _visible_to(actor)
    return Page[DatasetPublic](
        items=[
            dataset_public(db, d, full=visible_to is None)
            for d in catalog.list_datasets(db, visible_to=visible_to)
        ]
    )


def get_dataset(db: Database, name: str, *, actor: Actor) -> DatasetPublic:
    """One dataset (NotFound for an analyst without a budget on it, as for no dataset)."""
    visible_to = _visible_to(actor)
    return dataset_public(db, catalog.get(db, name, visible_to=visible_to), full=visible_to is None)
