"""Per-consumer overrides of the deployment's limits, and refusals for exceeding a limit.

An override is a stored value replacing the deployment's default for one
consumer (None: the default applies). Setting them is an admin action and is
ledgered (``limits_set``). A refusal for a limit (rate, concurrency) is
ledgered as a ``refused`` entry with cost 0, the way :func:`db.budgets.debit`
ledgers a refused debit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlmodel import select

from db import ledger
from db.amounts import MODEL_UNITS, as_json_number, cost_units, from_units, units_document
from db.engine import Database
from db.errors import InvalidInput, NotFound
from db.models import Budget, Consumer, ConsumerLimit, Dataset


@dataclass(frozen=True)
class Overrides:
    """One consumer's overrides; each None means the deployment's default applies."""

    min_epsilon: Decimal | None = None
    min_rho: Decimal | None = None
    max_cells: int | None = None
    max_concurrent: int | None = None
    requests_per_minute: int | None = None
    burst: int | None = None

    def document(self) -> dict[str, Any]:
        """The JSON-able form (amounts as numbers), as ledgered and returned."""
        return {
            name: (as_json_number(cost_units(value)) if isinstance(value, Decimal) else value)
            for name, value in asdict(self).items()
        }


def _overrides(row: ConsumerLimit | None) -> Overrides:
    if row is None:
        return Overrides()
    return Overrides(
        min_epsilon=None if row.min_epsilon_units is None else from_units(row.min_epsilon_units),
        min_rho=None if row.min_rho_units is None else from_units(row.min_rho_units),
        max_cells=row.max_cells,
        max_concurrent=row.max_concurrent,
        requests_per_minute=row.requests_per_minute,
        burst=row.burst,
    )


def _units(name: str, amount: Decimal | None) -> int | None:
    if amount is None:
        return None
    try:
        units = cost_units(amount)
    except ValueError as exc:
        raise InvalidInput(f"{name}: {exc}") from None
    if units <= 0:
        raise InvalidInput(f"{name} must be positive")
    return units


def get(db: Database, *, consumer_id: int) -> Overrides:
    """The overrides of the consumer with id ``consumer_id`` (none stored: all None)."""
    with db.read() as session:
        return _overrides(session.get(ConsumerLimit, consumer_id))


def get_by_name(db: Database, name: str) -> Overrides:
    """The overrides of consumer ``name``; NotFound if there is no such consumer."""
    with db.read() as session:
        consumer = session.exec(select(Consumer).where(Consumer.name == name)).first()
        if consumer is None:
            raise NotFound(f"consumer {name!r} does not exist")
        return _overrides(session.get(ConsumerLimit, consumer.id))


def set_overrides(
    db: Database, *, name: str, overrides: Overrides, actor: str, request_id: str | None = None
) -> Overrides:
    """Replace all overrides of consumer ``name`` (None fields: back to the default).

    Ledgers ``limits_set`` with the new and the previous overrides, in the same
    transaction. Integers must be ≥ 1 and amounts > 0 (else InvalidInput).
    """
    for field_name in ("max_cells", "max_concurrent", "requests_per_minute", "burst"):
        value = getattr(overrides, field_name)
        if value is not None and value < 1:
            raise InvalidInput(f"{field_name} must be at least 1")
    epsilon_units = _units("min_epsilon", overrides.min_epsilon)
    rho_units = _units("min_rho", overrides.min_rho)
    with db.write() as session:
        consumer = session.exec(select(Consumer).where(Consumer.name == name)).first()
        if consumer is None:
            raise NotFound(f"consumer {name!r} does not exist")
        row = session.get(ConsumerLimit, consumer.id)
        previous = _overrides(row)
        if row is None:
            row = ConsumerLimit(consumer_id=consumer.id or 0, updated_at=datetime.now(UTC))
        row.min_epsilon_units, row.min_rho_units = epsilon_units, rho_units
        row.max_cells, row.max_concurrent = overrides.max_cells, overrides.max_concurrent
        row.requests_per_minute, row.burst = overrides.requests_per_minute, overrides.burst
        row.updated_at = datetime.now(UTC)
        session.add(row)
        session.flush()
        stored = _overrides(row)
        ledger.append(
            session,
            kind="limits_set",
            actor=actor,
            consumer=name,
            request_id=request_id,
            details={"limits": stored.document(), "previous": previous.document()},
        )
        return stored


def record_refusal(
    db: Database,
    *,
    consumer_id: int,
    consumer: str,
    dataset: str | None,
    reason: str,
    details: dict[str, Any],
    request_id: str | None,
) -> int:
    """Ledger a ``refused`` entry (cost 0) for a request refused by a limit; its seq.

    The entry names the dataset and the budget's unit only when the consumer
    holds a budget on it (as elsewhere, a dataset without a budget is not
    revealed to exist); otherwise ``dataset`` is None and the cost is ε 0.
    """
    with db.write() as session:
        model = "pure"
        named: str | None = None
        if dataset is not None:
            row = session.exec(
                select(Budget.model)
                .join(Dataset, Dataset.id == Budget.dataset_id)  # type: ignore[arg-type]
                .where(Dataset.name == dataset, Budget.consumer_id == consumer_id)
            ).first()
            if row is not None and row in MODEL_UNITS:
                model, named = row, dataset
        entry = ledger.append(
            session,
            kind="refused",
            actor=consumer,
            consumer=consumer,
            dataset=named,
            cost=units_document(model, 0),
            request_id=request_id,
            details={**details, "reason": reason},
        )
        return entry.seq
