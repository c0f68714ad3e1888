"""Budgets and the one place that debits them.

:func:`debit` is the privacy filter: inside one write transaction (which holds
the ledger lock, see :meth:`db.engine.Database.write`) it checks the cost
against the consumer's remaining budget and the dataset's remaining cap (the
cap of its file, shared by every dataset over that file: one row, see
:mod:`db.dataset_versions`),
increments both with conditional updates that cannot pass a total, and appends
the ledger entry. Either all of that commits or none of it does. A refused
debit appends a ``refused`` entry (cost 0) and changes no amount.

A budget per period (``period_column``/``period_every`` set) has one total per
period: ``total_units`` is each period's total, a ``budget_periods`` row per
charged period holds what that period spent (created at its first charge, by a
conditional INSERT; later charges by a conditional UPDATE), and
``budgets.spent_units`` is the most that any one period spent, so that a total
can never be set below what a period already spent. Which period a query falls
in is decided outside ``db`` (``privacy.periods``), from public metadata. The
dataset cap stays one cap over all periods together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CursorResult, func, insert, literal, update
from sqlalchemy import select as sql_select
from sqlmodel import Session, col, select

from db import ledger
from db.amounts import MODEL_UNITS, total_units, units_document
from db.dataset_versions import cap_holder, refuse_retired
from db.engine import Database
from db.errors import InvalidChange, InvalidInput, NotFound
from db.models import Budget, BudgetPeriod, Consumer, Dataset, LedgerEntry


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class PeriodSpent:
    """What one charged period of a budget per period spent."""

    start: str
    spent_units: int


@dataclass(frozen=True)
class BudgetView:
    """A budget as the API shows it (amounts in integer units).

    With a period (``period_every`` set): ``total_units`` is each period's total,
    ``spent_units`` the most any one period spent, ``periods`` the charged periods."""

    consumer: str
    dataset: str
    model: str
    total_units: int
    spent_units: int
    updated_at: datetime
    period_column: str | None = None
    period_every: str | None = None
    periods: tuple[PeriodSpent, ...] = ()

    @property
    def remaining_units(self) -> int:
        """Units still available (with a period: in the period that spent most)."""
        return self.total_units - self.spent_units

    @property
    def cumulative_units(self) -> int:
        """With a period: the sum over the charged periods of what they spent."""
        return sum(p.spent_units for p in self.periods)


def _periods(session: Session, budget_id: int | None) -> tuple[PeriodSpent, ...]:
    rows = session.exec(
        select(BudgetPeriod)
        .where(BudgetPeriod.budget_id == budget_id)
        .order_by(col(BudgetPeriod.period_start))
    ).all()
    return tuple(PeriodSpent(start=r.period_start, spent_units=r.spent_units) for r in rows)


def _cumulative(session: Session, budget_id: int | None) -> int:
    total = session.exec(
        select(func.coalesce(func.sum(col(BudgetPeriod.spent_units)), 0)).where(
            BudgetPeriod.budget_id == budget_id
        )
    ).one()
    return int(total)


def _period_document(column: str | None, every: str | None) -> dict[str, str] | None:
    return None if every is None or column is None else {"column": column, "every": every}


def set_budget(
    db: Database,
    *,
    consumer: str,
    dataset: str,
    model: str,
    amount: Decimal,
    actor: str,
    request_id: str | None = None,
    period: tuple[str, str] | None = None,
) -> BudgetView:
    """Create or change a budget; never below what is spent; ledgers ``budget_set``.

    The model may change only while nothing is spent; it must match the dataset
    cap's model when the dataset has a cap. ``period`` = (column, every) makes
    ``amount`` each period's total (never below what any period spent); the period
    may change only while nothing is spent (the caller checks the column).
    """
    period_column, period_every = period if period is not None else (None, None)
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
                period_column=period_column,
                period_every=period_every,
            )
        else:
            previous = units_document(budget.model, budget.total_units)
            if budget.model != model and budget.spent_units > 0:
                raise InvalidChange(
                    f"the budget of {consumer!r} on {dataset!r} is "
                    f"{budget.model} and already spent; it cannot change model"
                )
            changes_period = (budget.period_column, budget.period_every) != (
                period_column,
                period_every,
            )
            if changes_period and (budget.spent_units > 0 or _periods(session, budget.id)):
                raise InvalidChange(
                    f"the budget of {consumer!r} on {dataset!r} is already spent; "
                    f"its period cannot change"
                )
            if units < budget.spent_units:
                spent = units_document(budget.model, budget.spent_units)
                what = "what a period already spent" if period_every else "what is already spent"
                raise InvalidChange(
                    f"cannot set the budget below {what} "
                    f"({spent[MODEL_UNITS[budget.model]]} "
                    f"{MODEL_UNITS[budget.model]})"
                )
            budget.model = model
            budget.total_units = units
            budget.updated_at = _now()
            budget.period_column = period_column
            budget.period_every = period_every
        session.add(budget)
        session.flush()
        details: dict[str, Any] = {
            "budget": units_document(model, units),
            "previous": previous,
            "spent": units_document(model, budget.spent_units),
        }
        if period_every is not None:
            details["period"] = _period_document(period_column, period_every)
        ledger.append(
            session,
            kind="budget_set",
            actor=actor,
            consumer=consumer,
            dataset=dataset,
            request_id=request_id,
            details=details,
        )
        return BudgetView(
            consumer=consumer,
            dataset=dataset,
            model=model,
            total_units=units,
            spent_units=budget.spent_units,
            updated_at=budget.updated_at,
            period_column=period_column,
            period_every=period_every,
            periods=_periods(session, budget.id),
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
                period_column=b.period_column,
                period_every=b.period_every,
                periods=_periods(session, b.id) if b.period_every is not None else (),
            )
            for b, c, d in rows
        ]


@dataclass(frozen=True)
class Debited:
    """The cost was charged; ``entry`` is the ledger entry that records it."""

    entry: LedgerEntry
    remaining_units: int
    cumulative_units: int | None = None
    """With a period: the sum over the budget's charged periods, this charge included."""


@dataclass(frozen=True)
class Refused:
    """The cost did not fit; nothing was charged; ``entry`` records the refusal.

    With a period, ``remaining_units`` is what remains in ``period_start``'s period."""

    entry: LedgerEntry
    reason: str
    remaining_units: int
    cap_remaining_units: int | None
    period_start: str | None = None


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
    period_start: str | None = None,
) -> Debited | Refused:
    """Charge ``cost_units`` of ``model`` to the budget and the dataset cap, or refuse.

    A budget per period is charged in the period that starts on ``period_start``
    (required then, refused otherwise): the period's row is created or incremented
    with a conditional INSERT or UPDATE (``period spent + cost <= total``).

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
    periodic = budget.period_every is not None
    if periodic != (period_start is not None):
        raise InvalidInput(
            f"the budget on {dataset!r} is per period: a charge names its period"
            if periodic
            else f"the budget on {dataset!r} has no period"
        )
    if period_start is not None and not isinstance(details.get("period"), dict):
        details = {**details, "period": {"start": period_start}}  # the ledger names it
    elif period_start is not None and details["period"].get("start") != period_start:
        raise InvalidInput("the ledgered period is not the period charged")
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
    period_row = (
        session.get(BudgetPeriod, (budget.id, period_start)) if period_start is not None else None
    )
    period_spent = period_row.spent_units if period_row is not None else 0
    remaining = budget.total_units - (period_spent if periodic else budget.spent_units)
    reason = None
    if cost_units > remaining:
        reason = "budget"
    elif cap_remaining is not None and cost_units > cap_remaining:
        reason = "dataset_cap"
    if reason is None and period_start is not None:
        if not _charge_period(session, budget, period_start, period_row, cost_units):
            reason = "budget"  # pragma: no cover - impossible under the ledger lock
    elif reason is None:
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
            entry=entry,
            reason=reason,
            remaining_units=remaining,
            cap_remaining_units=cap_remaining,
            period_start=period_start,
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
    return Debited(
        entry=entry,
        remaining_units=remaining - cost_units,
        cumulative_units=_cumulative(session, budget.id) if periodic else None,
    )


def _charge_period(
    session: Session,
    budget: Budget,
    period_start: str,
    period_row: BudgetPeriod | None,
    cost_units: int,
) -> bool:
    """Add ``cost_units`` to the period's spending if it stays within the period's total.

    The period's first charge inserts its row, conditionally on the cost fitting the
    total (a concurrent first charge would collide on the primary key and fail, never
    add); later charges are a conditional UPDATE. ``budgets.spent_units`` then rises to
    the period's new spending if that is the most any period spent."""
    total = sql_select(col(Budget.total_units)).where(col(Budget.id) == budget.id).scalar_subquery()
    if period_row is None:
        # RETURNING: psycopg reports no rowcount (-1) for an INSERT ... SELECT
        inserted = session.execute(
            insert(BudgetPeriod)
            .from_select(
                ["budget_id", "period_start", "spent_units"],
                sql_select(literal(budget.id), literal(period_start), literal(cost_units))
                .select_from(Budget)
                .where(col(Budget.id) == budget.id, col(Budget.total_units) >= cost_units),
            )
            .returning(col(BudgetPeriod.budget_id))
        ).all()
        if len(inserted) != 1:  # pragma: no cover - impossible under the ledger lock
            return False
        new_spent = cost_units
    else:
        new_spent = period_row.spent_units + cost_units  # before the UPDATE syncs the row
        added: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(BudgetPeriod)
            .where(
                col(BudgetPeriod.budget_id) == budget.id,
                col(BudgetPeriod.period_start) == period_start,
                col(BudgetPeriod.spent_units) + cost_units <= total,
            )
            .values(spent_units=col(BudgetPeriod.spent_units) + cost_units)
        )
        if added.rowcount != 1:  # pragma: no cover - impossible under the ledger lock
            return False
    session.execute(
        update(Budget)
        .where(col(Budget.id) == budget.id, col(Budget.spent_units) < new_spent)
        .values(spent_units=new_spent)
    )
    session.execute(update(Budget).where(col(Budget.id) == budget.id).values(updated_at=_now()))
    session.expire(budget)
    if period_row is not None:
        session.expire(period_row)
    return True


def spend(
    db: Database,
    *,
    consumer: str,
    dataset: str,
    model: str,
    cost_units: int,
    details: dict[str, Any],
    request_id: str | None = None,
    period_start: str | None = None,
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
            period_start=period_start,
        )


@dataclass(frozen=True)
class Standing:
    """Where one budget stands: what remains (per period: in one period) and, per
    period, the sum over its charged periods (None without a period)."""

    model: str
    remaining_units: int
    cumulative_units: int | None


def standing_in(session: Session, budget: Budget, period_start: str | None) -> Standing:
    """:class:`Standing` of ``budget`` in ``session`` (``period_start``: the period asked
    about; a budget per period without one shows a period not charged yet)."""
    if budget.period_every is None:
        return Standing(budget.model, budget.total_units - budget.spent_units, None)
    row = session.get(BudgetPeriod, (budget.id, period_start)) if period_start else None
    spent = row.spent_units if row is not None else 0
    return Standing(budget.model, budget.total_units - spent, _cumulative(session, budget.id))


def standing(
    db: Database, *, consumer_id: int, dataset_id: int, period_start: str | None = None
) -> Standing:
    """Where the budget of ``consumer_id`` on ``dataset_id`` stands (see :func:`standing_in`)."""
    with db.read() as session:
        budget = session.exec(
            select(Budget).where(Budget.consumer_id == consumer_id, Budget.dataset_id == dataset_id)
        ).first()
        if budget is None:
            raise NotFound("budget does not exist")
        return standing_in(session, budget, period_start)


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
