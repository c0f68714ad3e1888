"""Budgets: admins set them, analysts read their own, auditors read all."""

from __future__ import annotations

from decimal import Decimal

from fastapi import APIRouter, Query

from api.deps import Admin, AnyRole, DbDep, RequestIdDep
from api.openapi import problems
from api.schemas import BudgetPublic, BudgetSet, Page
from db import budgets, catalog
from db.amounts import as_json_number
from db.budgets import BudgetView
from db.engine import Database
from privacy.accounting import zcdp_to_epsilon_delta
from privacy.metadata import PureCost

router = APIRouter(prefix="/v1/budgets", tags=["budgets"])
DEFAULT_DELTA = 1e-9


def budget_public(view: BudgetView, delta: float = DEFAULT_DELTA) -> BudgetPublic:
    """The public view of a budget."""
    unit = budgets.MODEL_UNITS[view.model]
    remaining = as_json_number(view.remaining_units)
    equivalent = None
    if view.model == "zcdp" and view.remaining_units > 0:
        epsilon = zcdp_to_epsilon_delta(float(remaining), delta)
        equivalent = {"epsilon": epsilon, "delta": delta}
    return BudgetPublic(
        consumer=view.consumer,
        dataset=view.dataset,
        model=view.model,
        unit=unit,
        total=as_json_number(view.total_units),
        spent=as_json_number(view.spent_units),
        remaining=remaining,
        remaining_epsilon_delta=equivalent,
        updated_at=view.updated_at,
    )


def _declared_deltas(db: Database) -> dict[str, float]:
    """Each dataset's declared δ, at which zCDP budgets show their (ε, δ) equivalent."""
    return {
        dataset.name: float(catalog.metadata_of(dataset).get("delta", DEFAULT_DELTA))
        for dataset in catalog.list_datasets(db)
    }


@router.put(
    "/{consumer}/{dataset}",
    response_model=BudgetPublic,
    responses=problems(
        401,
        403,
        404,
        409,
        413,
        422,
        notes={
            409: "The new total is below what is already spent, or the model of a spent "
            "budget would change (`conflict`)."
        },
    ),
)
def set_budget(
    consumer: str, dataset: str, body: BudgetSet, admin: Admin, db: DbDep, request_id: RequestIdDep
) -> BudgetPublic:
    """Create or change a budget (never below what is spent). Role: admin."""
    amount: Decimal = body.epsilon if isinstance(body, PureCost) else body.rho
    view = budgets.set_budget(
        db,
        consumer=consumer,
        dataset=dataset,
        model=body.model,
        amount=amount,
        actor=admin.name,
        request_id=request_id,
    )
    delta = catalog.metadata_of(catalog.get(db, dataset)).get("delta", DEFAULT_DELTA)
    return budget_public(view, float(delta))


@router.get("", response_model=Page[BudgetPublic], responses=problems(401, 422))
def list_budgets(
    principal: AnyRole,
    db: DbDep,
    consumer: str | None = Query(default=None, max_length=64),
    dataset: str | None = Query(default=None, max_length=64),
) -> Page[BudgetPublic]:
    """List budgets; an analyst sees only its own."""
    if principal.role == "analyst":
        consumer = principal.name
    views = budgets.list_budgets(db, consumer=consumer, dataset=dataset)
    deltas = _declared_deltas(db) if any(v.model == "zcdp" for v in views) else {}
    return Page[BudgetPublic](
        items=[budget_public(v, deltas.get(v.dataset, DEFAULT_DELTA)) for v in views]
    )
