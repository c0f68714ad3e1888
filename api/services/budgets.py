"""Budgets: admins set them, analysts read their own, auditors read all."""

from __future__ import annotations

from api.release_body import Cumulative
from api.schemas import BudgetPublic, BudgetSet, Page, PeriodPublic
from api.services import Actor
from db import budgets, catalog
from db.amounts import from_units
from db.budgets import BudgetView
from db.engine import Database
from db.errors import InvalidInput
from db.models import Dataset
from privacy.accounting import zcdp_to_epsilon_delta
from privacy.amount import PrivacyAmount
from privacy.metadata import DatasetMetadata
from privacy.periods import Period, PeriodSpec, check_period_column

DEFAULT_DELTA = 1e-9
"""The δ at which a zCDP budget shows its (ε, δ) equivalent when its dataset declares none."""


def stored_amount(model: str, units: int) -> PrivacyAmount:
    """The exact amount that ``units`` (as the database stores them) of ``model`` stand for."""
    return PrivacyAmount.of(model, from_units(units))


def requested_amount(body: BudgetSet) -> PrivacyAmount:
    """The amount a ``PUT /v1/budgets/...`` body (or ``ruis admin set-budget``) asks for."""
    return PrivacyAmount.from_document(body.model_dump(exclude={"period"}))


def budget_public(view: BudgetView, delta: float = DEFAULT_DELTA) -> BudgetPublic:
    """The public view of a budget (what remains of a zCDP one also as (ε, δ) at ``delta``)."""
    total = stored_amount(view.model, view.total_units)
    spent = stored_amount(view.model, view.spent_units)
    remaining = stored_amount(view.model, view.remaining_units)
    equivalent = None
    if view.model == "zcdp" and view.remaining_units > 0:
        equivalent = {
            "epsilon": zcdp_to_epsilon_delta(float(remaining.value), delta),
            "delta": delta,
        }
    public = BudgetPublic(
        consumer=view.consumer,
        dataset=view.dataset,
        model=total.model,
        unit=total.unit,
        total=total.number(),
        spent=spent.number(),
        remaining=remaining.number(),
        remaining_epsilon_delta=equivalent,
        updated_at=view.updated_at,
    )
    if view.period_every is None or view.period_column is None:
        return public
    spec = PeriodSpec.model_validate({"column": view.period_column, "every": view.period_every})
    periods = []
    for charged in view.periods:
        period = Period.starting(spec.every, charged.start)
        periods.append(
            PeriodPublic(
                **period.document(),
                total=total.number(),
                spent=stored_amount(view.model, charged.spent_units).number(),
                remaining=stored_amount(
                    view.model, view.total_units - charged.spent_units
                ).number(),
            )
        )
    cumulative = Cumulative.of(stored_amount(view.model, view.cumulative_units), delta)
    return public.model_copy(update={"period": spec, "periods": periods, "cumulative": cumulative})


def declared_delta(dataset: Dataset) -> float:
    """The δ ``dataset`` declares, at which its zCDP budgets show their (ε, δ) equivalent."""
    return float(catalog.metadata_of(dataset).get("delta", DEFAULT_DELTA))


def set_budget(
    db: Database,
    consumer: str,
    dataset: str,
    amount: PrivacyAmount,
    *,
    actor: Actor,
    request_id: str | None = None,
    period: PeriodSpec | None = None,
) -> BudgetPublic:
    """Create or change the budget of ``consumer`` on ``dataset`` (never below what is
    spent; with ``period``, never below what any period spent); ledgers ``budget_set``.

    A period's column must be a date or datetime column of the dataset (a 422)."""
    if period is not None:
        try:
            metadata = DatasetMetadata.model_validate(catalog.metadata_of(catalog.get(db, dataset)))
            check_period_column(period, metadata)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
    view = budgets.set_budget(
        db,
        consumer=consumer,
        dataset=dataset,
        model=amount.model,
        amount=amount.value,
        actor=actor.name,
        request_id=request_id,
        period=(period.column, period.every) if period is not None else None,
    )
    return budget_public(view, declared_delta(catalog.get(db, dataset)))


def list_budgets(
    db: Database, *, actor: Actor, consumer: str | None = None, dataset: str | None = None
) -> Page[BudgetPublic]:
    """Budgets, optionally of one consumer and/or one dataset; an analyst sees only its own."""
    if actor.is_analyst:
        consumer = actor.name
    views = budgets.list_budgets(db, consumer=consumer, dataset=dataset)
    deltas = (
        {d.name: declared_delta(d) for d in catalog.list_datasets(db)}
        if any(v.model == "zcdp" for v in views)
        else {}
    )
    return Page[BudgetPublic](
        items=[budget_public(v, deltas.get(v.dataset, DEFAULT_DELTA)) for v in views]
    )
