"""Registered datasets: their public metadata and their budget cap."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlmodel import Session, col, select

from db import dataset_versions, ledger
from db.amounts import as_json_number, total_units
from db.engine import Database
from db.errors import AlreadyExists, InvalidChange, InvalidInput, NotFound
from db.models import Budget, Dataset


def _now() -> datetime:
    return datetime.now(UTC)


def cap_document(dataset: Dataset) -> dict[str, Any] | None:
    """The cap as ``{"model", amount, "spent", "remaining"}`` in the cap's unit, or None.

    ``dataset`` is the row that holds the cap (:func:`db.dataset_versions.cap_holder`)."""
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

    Over a file that another dataset was registered on (:func:`_shared_cap`), the new
    dataset shares that dataset's cap: its ``budget_cap`` must be absent or the same.
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
        asked = None
        if cap is not None:
            amount = cap["epsilon"] if cap["model"] == "pure" else cap["rho"]
            try:
                asked = (str(cap["model"]), total_units(Decimal(str(amount))))
            except ValueError as exc:  # too large for the integer units
                raise InvalidInput(f"budget cap: {exc}") from None
        holder = _shared_cap(session, metadata, file, asked)
        if holder is not None:
            dataset.cap_dataset_id = holder.id
        elif asked is not None:
            dataset.cap_model, dataset.cap_total_units = asked
        session.add(dataset)
        session.flush()
        dataset_versions.add_first(session, dataset)
        shared = {"cap_shared_with": holder.name} if holder is not None else {}
        ledger.append(
            session,
            kind="dataset_registered",
            actor=actor,
            dataset=name,
            request_id=request_id,
            details={"metadata": metadata, **({"file": file} if file else {}), **shared},
        )
        return dataset


def _shared_cap(
    session: Session,
    metadata: dict[str, Any],
    file: dict[str, Any] | None,
    asked: tuple[str, int] | None,
) -> Dataset | None:
    """The dataset whose cap a registration over this file must share, or None.

    The file is matched by path or content (:func:`db.dataset_versions.identities`)
    against every version of every dataset. A cap stated by the new registration must
    equal the shared one (a file without a cap cannot gain one through a second view,
    which the first would not obey); a file matched by two cap groups is refused.
    """
    groups = dataset_versions.file_groups(session, dataset_versions.identities(metadata, file))
    if not groups:
        return None
    if len(groups) > 1:
        names = sorted(n for group in groups.values() for n in group)
        raise InvalidChange(
            f"this file is registered as datasets with separate caps ({', '.join(names)})"
        )
    [(holder_id, names)] = groups.items()
    holder = session.get(Dataset, holder_id)
    if holder is None:  # pragma: no cover - guarded by the foreign key
        raise NotFound("the dataset holding the file's cap is missing")
    held = (
        None
        if holder.cap_model is None or holder.cap_total_units is None
        else (holder.cap_model, holder.cap_total_units)
    )
    if asked is not None and asked != held:
        unit = "epsilon" if held is not None and held[0] == "pure" else "rho"
        shown = (
            "no cap"
            if held is None
            else f"the cap {{'model': '{held[0]}', '{unit}': {as_json_number(held[1])}}} "
            f"of {holder.name!r}"
        )
        raise InvalidChange(
            f"this file is registered already as {', '.join(map(repr, sorted(names)))} "
            f"with {shown}; every dataset over one file shares that cap: omit "
            "budget_cap or state the same"
        )
    return holder


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
