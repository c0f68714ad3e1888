"""Budgets: admins set them, analysts read their own, auditors read all."""

from __future__ import annotations

from fastapi import APIRouter, Query

from api.deps import Admin, AnyRole, DbDep, RequestIdDep
from api.openapi import problems
from api.schemas import BudgetPublic, BudgetSet, Page
from api.services import Actor
from api.services import budgets as service

router = APIRouter(prefix="/v1/budgets", tags=["budgets"])


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
            409: "The new total is below what is already spent (with a period: what a "
            "period spent), or the model or period of a spent budget would change "
            "(`conflict`)."
        },
    ),
)
def set_budget(
    consumer: str, dataset: str, body: BudgetSet, admin: Admin, db: DbDep, request_id: RequestIdDep
) -> BudgetPublic:
    """Create or change a budget (never below what is spent); with `period`, one total per
    period of a date column. Role: admin."""
    amount = service.requested_amount(body)
    return service.set_budget(
        db,
        consumer,
        dataset,
        amount,
        actor=Actor.of(admin),
        request_id=request_id,
        period=body.period,
    )


@router.get("", response_model=Page[BudgetPublic], responses=problems(401, 422))
def list_budgets(
    principal: AnyRole,
    db: DbDep,
    consumer: str | None = Query(default=None, max_length=64),
    dataset: str | None = Query(default=None, max_length=64),
) -> Page[BudgetPublic]:
    """List budgets; an analyst sees only its own."""
    return service.list_budgets(db, actor=Actor.of(principal), consumer=consumer, dataset=dataset)
