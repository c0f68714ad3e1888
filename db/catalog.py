"""Registered datasets: their public metadata and their budget cap."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlmodel import Session, col, select

from db import ledger
from db.amounts import as_json_number, total_units
from db.engine import Database
from db.errors import AlreadyExists, InvalidInput, NotFound
from db.models import Budget, Dataset


def _now() -> datetime:
    return datetime.now(UTC)


def cap_document(dataset: Dataset) -> dict[str, Any] | None:
    """The cap as ``{"model", amount, "spent", "remaining"}`` in the cap's unit, or None."""
    if dataset.cap_model is None or dataset.cap_total_units is None:
        return None
    unit = "epsilon" if dataset.cap_model == "pure" else "rho"
    return {
        "model": dataset.cap_model,
        unit: as_json_number(dataset.cap_total_units),
        "spent": as_json_number(dataset.cap_spent_units),
        "remaining": as_json_number(dataset.cap_total_units - dataset.cap_spent_units),
    }


def register(
    db: Database,
    *,
    metadata: dict[str, Any],
    actor: str,
    request_id: str | None = None,
    file: dict[str, Any] | None = None,
) -> Dataset:
    """Store a dataset's public metadata; ledgers ``dataset_registered``.

    ``metadata`` must already be validated (and its file checked) by the caller.
    The cap amount is taken from ``metadata["budget_cap"]`` and rounded down.
    ``file`` is the fingerprint of the file queries read (see :mod:`db.dataset_files`),
    stored and ledgered with the metadata.
    """
    name = str(metadata["name"])
    cap = metadata.get("budget_cap")
    with db.write() as session:
        if session.exec(select(Dataset).where(Dataset.name == name)).first() is not None:
            raise AlreadyExists(f"dataset {name!r} already exists")
        dataset = Dataset(
            name=name,
            metadata_json=ledger.canonical_json(metadata),
            created_at=_now(),
            file_json=ledger.canonical_json(file) if file is not None else None,
        )
        if cap is not None:
            dataset.cap_model = str(cap["model"])
            amount = cap["epsilon"] if cap["model"] == "pure" else cap["rho"]
            try:
                dataset.cap_total_units = total_units(Decimal(str(amount)))
            except ValueError as exc:  # too large for the integer units
                raise InvalidInput(f"budget cap: {exc}") from None
        session.add(dataset)
        session.flush()
        ledger.append(
            session,
            kind="dataset_registered",
            actor=actor,
            dataset=name,
            request_id=request_id,
            details={"metadata": metadata, **({"file": file} if file else {})},
        )
        return dataset


def exists(db: Database, name: str) -> bool:
    """Whether a dataset called ``name`` is registered."""
    with db.read() as session:
        return session.exec(select(Dataset.id).where(Dataset.name == name)).first() is not None


def _get(session: Session, name: str) -> Dataset:
    dataset = session.exec(select(Dataset).where(Dataset.name == name)).first()
    if dataset is None:
        raise NotFound(f"dataset {name!r} does not exist")
    return dataset


def get(db: Database, name: str, *, visible_to: int | None = None) -> Dataset:
    """The dataset ``name``; with ``visible_to`` only if that consumer holds a budget on it.

    A dataset the consumer holds no budget on raises the same NotFound as one that
    does not exist, so its existence is not revealed.
    """
    with db.read() as session:
        dataset = session.exec(select(Dataset).where(Dataset.name == name)).first()
        if dataset is not None and visible_to is not None:
            budget = session.exec(
                select(Budget.id).where(
                    Budget.dataset_id == dataset.id, Budget.consumer_id == visible_to
                )
            ).first()
            if budget is None:
                dataset = None
        if dataset is None:
            raise NotFound(f"dataset {name!r} does not exist")
        return dataset


def list_datasets(db: Database, *, visible_to: int | None = None) -> list[Dataset]:
    """All datasets by name; with ``visible_to`` only those that consumer has a budget on."""
    with db.read() as session:
        query = select(Dataset)
        if visible_to is not None:
            query = query.join(Budget, col(Budget.dataset_id) == col(Dataset.id)).where(
                Budget.consumer_id == visible_to
            )
        return list(session.exec(query.order_by(col(Dataset.name))).all())


def metadata_of(dataset: Dataset) -> dict[str, Any]:
    """The stored public metadata document."""
    value: dict[str, Any] = json.loads(dataset.metadata_json)
    return value
