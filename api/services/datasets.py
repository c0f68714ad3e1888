"""Datasets: registering, listing and reinstating them; public metadata only, never the data."""

from __future__ import annotations

from pathlib import Path

from api import dataset_files
from api.schemas import DatasetPublic, Page
from api.services import Actor
from db import catalog
from db.dataset_files import fingerprint_of
from db.engine import Database
from db.models import Dataset
from privacy.metadata import DatasetMetadata


def dataset_public(dataset: Dataset, *, full: bool = False) -> DatasetPublic:
    """The public view of a stored dataset; ``full`` adds the suspension reason and the
    file's fingerprint (for admins and auditors, not analysts)."""
    metadata = catalog.metadata_of(dataset)
    metadata["budget_cap"] = catalog.cap_document(dataset)
    extra = (
        {"suspended_reason": dataset.suspended_reason, "file": fingerprint_of(dataset)}
        if full
        else {}
    )
    return DatasetPublic(**metadata, created_at=dataset.created_at, status=dataset.status, **extra)


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
    return dataset_public(dataset, full=True)


def reinstate_dataset(
    db: Database, data_dir: Path, name: str, *, actor: Actor, request_id: str | None = None
) -> DatasetPublic:
    """Re-check a dataset's current file in full and make it active again."""
    dataset = dataset_files.reinstate(db, data_dir, name, actor=actor.name, request_id=request_id)
    return dataset_public(dataset, full=True)


def _visible_to(actor: Actor) -> int | None:
    return actor.consumer_id if actor.is_analyst else None


def list_datasets(db: Database, *, actor: Actor) -> Page[DatasetPublic]:
    """The datasets ``actor`` may see (an analyst: those it holds a budget on)."""
    visible_to = _visible_to(actor)
    return Page[DatasetPublic](
        items=[
            dataset_public(d, full=visible_to is None)
            for d in catalog.list_datasets(db, visible_to=visible_to)
        ]
    )


def get_dataset(db: Database, name: str, *, actor: Actor) -> DatasetPublic:
    """One dataset (NotFound for an analyst without a budget on it, as for no dataset)."""
    visible_to = _visible_to(actor)
    return dataset_public(catalog.get(db, name, visible_to=visible_to), full=visible_to is None)
