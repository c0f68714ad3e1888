"""Per-consumer limits: an admin overrides the deployment's defaults for one consumer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.deps import Admin, AdminOrAuditor, DbDep, RequestIdDep
from api.limits import Limiter, get_limiter
from api.openapi import problems
from api.services import Actor
from api.services import limits as service
from api.services.limits import ConsumerLimitsPublic, LimitsOverrides

router = APIRouter(prefix="/v1/consumers", tags=["consumers (admin)"])
LimiterDep = Annotated[Limiter, Depends(get_limiter)]


@router.get(
    "/{name}/limits", response_model=ConsumerLimitsPublic, responses=problems(401, 403, 404, 422)
)
def get_limits(
    name: str, _: AdminOrAuditor, db: DbDep, limiter: LimiterDep
) -> ConsumerLimitsPublic:
    """A consumer's limit overrides and the limits in effect. Roles: admin, auditor."""
    return service.get_limits(db, limiter.settings, name)


@router.put(
    "/{name}/limits",
    response_model=ConsumerLimitsPublic,
    responses=problems(401, 403, 404, 413, 422),
)
def set_limits(
    name: str,
    body: LimitsOverrides,
    admin: Admin,
    db: DbDep,
    request_id: RequestIdDep,
    limiter: LimiterDep,
) -> ConsumerLimitsPublic:
    """Replace a consumer's limit overrides (absent: the default); ledgered. Role: admin."""
    return service.set_limits(
        db,
        limiter.settings,
        name,
        body,
        actor=Actor.of(admin),
        request_id=request_id,
        limiter=limiter,
    )
