"""Budgets and the one place that debits them.

:func:`debit` is the privacy filter: inside one write transaction (which holds
the ledger lock, see :meth:`db.engine.Database.write`) it checks the cost
against the consumer's remaining budget and the dataset's remaining cap (the
cap of its file, shared by every dataset over that file: one row, see
:mod:`db.dataset_versions`),
increments both with conditional updates that cannot pass a total, and appends
the ledger entry. Either all of that commits or none of it does. A refused
debit appends a ``refused`` entry (cost 0) and changes no amount.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CursorResult, update
from sqlmodel import Session, col, select

from db import ledger
from db.amounts import MODEL_UNITS, from_units, total_units, units_document
from db.dataset_versions import cap_holder, refuse_retired
from db.engine import Database
from db.errors import InvalidChange, InvalidInput, NotFound
from db.models import Budget, Consumer, Dataset, LedgerEntry


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class BudgetView:
    """A budget as the API shows it (amounts in integer units)."""

    consumer: str
    dataset: str
    model: str
    total_units: int
    spent_units: int
    updated_at: datetime

    @property
    def remaining_units(self) -> int:
        """Units still available."""
        return self.total_units - self.spent_units


def set_budget(
    db: Database,
    *,
    consumer: str,
    dataset: str,
    model: str,
    amount: Decimal,
    actor: str,
    request_id: str | None = None,
) -> BudgetView:
    """Create or change a budget; never below what is spent; ledgers ``budget_set``.

    The model may change only while nothing is spent; it must match the dataset
    cap's model when the dataset has a cap.
    """
    if model not in MODEL_UNITS:
        raise InvalidInput(f"unknown privacy model {model!r}")
    try:
        units = total_units(amount)
    except ValueError as exc:  # not finite, negative or too large for the integer units
        raise InvalidInput(str(exc)) from None
    with db.write() as session:
        consumer_row = session.exec(select(Consumer).where(Consumer.name == consumer)).first()
        if consumer_row is None:
            raise NotFound(f"consumer {consumer!r} does not exist")
        if consumer_row.role != "analyst":
            raise InvalidInput(f"budgets are for analysts; {consumer!r} is {consumer_row.role}")
        dataset_row = session.exec(select(Dataset).where(Dataset.name == dataset)).first()
        if dataset_row is None:
            raise NotFound(f"dataset {dataset!r} does not exist")
        refuse_retired(dataset_row, "setting a budget")
        cap_row = cap_holder(session, dataset_row)
        if cap_row.cap_model is not None and cap_row.cap_model != model:
            raise InvalidInput(
                f"dataset {dataset!r} has a {cap_row.cap_model} cap; "
                f"its budgets must be {cap_row.cap_model} too"
            )
        budget = session.exec(
            select(Budget).where(
                Budget.consumer_id == consumer_row.id, Budget.dataset_id == dataset_row.id
            )
        ).first()
        previous = None
        if budget is None:
            budget = Budget(
                consumer_id=consumer_row.id or 0,
                dataset_id=dataset_row.id or 0,
                model=model,
                total_units=units,
                spent_units=0,
                updated_at=_now(),
            )
        else:
            previous = units_document(budget.model, budget.total_units)
            if budget.model != model and budget.spent_units > 0:
                raise InvalidChange(
                    f"the budget of {consumer!r} on {dataset!r} is "
                    f"{budget.model} and already spent; it cannot change model"
                )
            if units < budget.spent_units:
                spent = units_document(budget.model, budget.spent_units)
                raise InvalidChange(
                    f"cannot set the budget below what is already spent "
                    f"({spent[MODEL_UNITS[budget.model]]} "
                    f"{MODEL_UNITS[budget.model]})"
                )
            budget.model = model
            budget.total_units = units
            budget.updated_at = _now()
        session.add(budget)
        session.flush()
        ledger.append(
            session,
            kind="budget_set",
            actor=actor,
            consumer=consumer,
            dataset=dataset,
            request_id=request_id,
            details={
                "budget": units_document(model, units),
                "previous": previous,
                "spent": units_document(model, budget.spent_units),
            },
        )
        return BudgetView(
            consumer=consumer,
            dataset=dataset,
            model=model,
            total_units=units,
            spent_units=budget.spent_units,
            updated_at=budget.updated_at,
        )


def list_budgets(
    db: Database, *, consumer: str | None = None, dataset: str | None = None
) -> list[BudgetView]:
    """Budgets, optionally of one consumer and/or one dataset, by consumer then dataset."""
    with db.read() as session:
        query = (
            select(Budget, Consumer.name, Dataset.name)
            .join(Consumer, col(Consumer.id) == col(Budget.consumer_id))
            .join(Dataset, col(Dataset.id) == col(Budget.dataset_id))
        )
        if consumer is not None:
            query = query.where(Consumer.name == consumer)
        if dataset is not None:
            query = query.where(Dataset.name == dataset)
        rows = session.exec(query.order_by(col(Consumer.name), col(Dataset.name))).all()
        return [
            BudgetView(
                consumer=c,
                dataset=d,
                model=b.model,
                total_units=b.total_units,
                spent_units=b.spent_units,
                updated_at=b.updated_at,
            )
            for b, c, d in rows
        ]


@dataclass(frozen=True)
class Debited:
    """The cost was charged; ``entry`` is the ledger entry that records it."""

    entry: LedgerEntry
    remaining_units: int


@dataclass(frozen=True)
class Refused:
    """The cost did not fit; nothing was charged; ``entry`` records the refusal."""

    entry: LedgerEntry
    reason: str
    remaining_units: int
    cap_remaining_units: int | None


def debit(
    session: Session,
    *,
    consumer_id: int,
    consumer: str,
    dataset_id: int,
    dataset: str,
    model: str,
    cost_units: int,
    actor: str,
    details: dict[str, Any],
    request_id: str | None,
    kind: str = "release",
) -> Debited | Refused:
    """Charge ``cost_units`` of ``model`` to the budget and the dataset cap, or refuse.

    Runs inside the caller's :meth:`Database.write` transaction (the ledger lock
    is held, so concurrent debits queue). The updates are conditional
    (``spent + cost <= total``), so even without the lock no interleaving could
    pass a total; CHECK constraints in the schema are a third line of defence.
    On success appends a ``kind`` entry carrying the cost; on refusal a
    ``refused`` entry with cost 0, the asked cost and the reason.
    """
    if cost_units <= 0:
        raise InvalidInput("a cost must be positive")
    budget = session.exec(
        select(Budget).where(Budget.consumer_id == consumer_id, Budget.dataset_id == dataset_id)
    ).first()
    if budget is None:
        raise NotFound(f"dataset {dataset!r} does not exist")
    if budget.model != model:
        raise InvalidInput(f"the budget on {dataset!r} is {budget.model}, not {model}")
    dataset_row = session.get(Dataset, dataset_id)
    if dataset_row is None:  # pragma: no cover - guarded by the foreign key
        raise NotFound(f"dataset {dataset!r} does not exist")
    # the cap of the file: held in the row of the first dataset registered over it
    dataset_row = cap_holder(session, dataset_row)
    cap_row_id = dataset_row.id
    cap_remaining = (
        None
        if dataset_row.cap_total_units is None
        else dataset_row.cap_total_units - dataset_row.cap_spent_units
    )
    remaining = budget.total_units - budget.spent_units
    reason = None
    if cost_units > remaining:
        reason = "budget"
    elif cap_remaining is not None and cost_units > cap_remaining:
        reason = "dataset_cap"
    if reason is None:
        charged: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(Budget)
            .where(col(Budget.id) == budget.id)
            .where(col(Budget.spent_units) + cost_units <= col(Budget.total_units))
            .values(spent_units=col(Budget.spent_units) + cost_units, updated_at=_now())
        )
        if charged.rowcount != 1:  # pragma: no cover - impossible under the ledger lock
            reason = "budget"
    if reason is None and cap_remaining is not None:
        capped: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(Dataset)
            .where(col(Dataset.id) == cap_row_id)
            .where(col(Dataset.cap_spent_units) + cost_units <= col(Dataset.cap_total_units))
            .values(cap_spent_units=col(Dataset.cap_spent_units) + cost_units)
        )
        if capped.rowcount != 1:  # pragma: no cover - impossible under the ledger lock
            raise InvalidChange("dataset cap changed during the debit")
    asked = units_document(model, cost_units)
    if reason is not None:
        entry = ledger.append(
            session,
            kind="refused",
            actor=actor,
            consumer=consumer,
            dataset=dataset,
            cost=units_document(model, 0),
            request_id=request_id,
            details={
                **details,
                "reason": reason,
                "asked": asked,
                "remaining": units_document(model, remaining),
                "dataset_cap_remaining": None
                if cap_remaining is None
                else units_document(model, cap_remaining),
            },
        )
        return Refused(
            entry=entry, reason=reason, remaining_units=remaining, cap_remaining_units=cap_remaining
        )
    entry = ledger.append(
        session,
        kind=kind,
        actor=actor,
        consumer=consumer,
        dataset=dataset,
        cost=asked,
        request_id=request_id,
        details=details,
    )
    return Debited(entry=entry, remaining_units=remaining - cost_units)


def spend(
    db: Database,
    *,
    consumer: str,
    dataset: str,
    model: str,
    cost_units: int,
    details: dict[str, Any],
    request_id: str | None = None,
) -> Debited | Refused:
    """Open a write transaction and :func:`debit` in it (the contract the tests race)."""
    with db.write() as session:
        consumer_row = session.exec(select(Consumer).where(Consumer.name == consumer)).first()
        dataset_row = session.exec(select(Dataset).where(Dataset.name == dataset)).first()
        if consumer_row is None or dataset_row is None:
            raise NotFound("unknown consumer or dataset")
        return debit(
            session,
            consumer_id=consumer_row.id or 0,
            consumer=consumer,
            dataset_id=dataset_row.id or 0,
            dataset=dataset,
            model=model,
            cost_units=cost_units,
            actor=consumer,
            details=details,
            request_id=request_id,
        )


def remaining(db: Database, *, consumer_id: int, dataset_id: int) -> tuple[str, Decimal]:
    """The model and remaining amount of one budget."""
    with db.read() as session:
        budget = session.exec(
            select(Budget).where(Budget.consumer_id == consumer_id, Budget.dataset_id == dataset_id)
        ).first()
        if budget is None:
            raise NotFound("budget does not exist")
        return budget.model, from_units(budget.total_units - budget.spent_units)


def dataset_and_budget(db: Database, *, dataset: str, consumer_id: int) -> tuple[Dataset, Budget]:
    """One read: the dataset ``dataset`` and this consumer's budget on it.

    A dataset without a budget for the consumer raises the same NotFound as a
    dataset that does not exist, so its existence is not revealed.
    """
    with db.read() as session:
        row = session.exec(
            select(Dataset, Budget)
            .join(Budget, col(Budget.dataset_id) == col(Dataset.id))
            .where(Dataset.name == dataset, Budget.consumer_id == consumer_id)
        ).first()
    if row is None:
        raise NotFound(f"dataset {dataset!r} does not exist")
    return row[0], row[1]
