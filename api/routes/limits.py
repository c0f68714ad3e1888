"""Per-consumer limits: an admin overrides the deployment's defaults for one consumer."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from api.deps import Admin, AdminOrAuditor, DbDep, RequestIdDep
from api.limits import EffectiveLimits, Limiter, get_limiter
from api.openapi import problems
from api.settings import LimitSettings
from db import accounts
from db import limits as stored_limits
from db.limits import Overrides

router = APIRouter(prefix="/v1/consumers", tags=["consumers (admin)"])
LimiterDep = Annotated[Limiter, Depends(get_limiter)]
_Amount = Annotated[
    Decimal | None,
    Field(default=None, gt=0, le=1000, allow_inf_nan=False, max_digits=24, decimal_places=12),
    PlainSerializer(
        lambda v: None if v is None else float(v), return_type=float | None, when_used="json"
    ),
]
_Count = Annotated[int | None, Field(default=None, ge=1, le=10**9)]


class LimitsOverrides(BaseModel):
    """One consumer's overrides; a field that is null or absent uses the deployment's default."""

    model_config = ConfigDict(extra="forbid")
    min_epsilon: _Amount = None
    min_rho: _Amount = None
    max_cells: _Count = None
    max_concurrent: _Count = None
    requests_per_minute: _Count = None
    burst: _Count = None


class EffectiveLimitsPublic(BaseModel):
    """The limits that apply to the consumer: its overrides, else the deployment's defaults."""

    min_epsilon: float
    min_rho: float
    max_cells: int
    max_concurrent: int
    requests_per_minute: int
    burst: int


class ConsumerLimitsPublic(BaseModel):
    """A consumer's overrides and the limits in effect (concurrency and rates per process)."""

    consumer: str
    overrides: LimitsOverrides
    effective: EffectiveLimitsPublic


def limits_public(name: str, overrides: Overrides, settings: LimitSettings) -> ConsumerLimitsPublic:
    """The public form of ``name``'s overrides and the limits in effect under ``settings``."""
    effective = EffectiveLimits.of(settings, overrides)
    return ConsumerLimitsPublic(
        consumer=name,
        overrides=LimitsOverrides.model_validate(overrides.document()),
        effective=EffectiveLimitsPublic.model_validate(effective.document()),
    )


@router.get(
    "/{name}/limits", response_model=ConsumerLimitsPublic, responses=problems(401, 403, 404, 422)
)
def get_limits(
    name: str, _: AdminOrAuditor, db: DbDep, limiter: LimiterDep
) -> ConsumerLimitsPublic:
    """A consumer's limit overrides and the limits in effect. Roles: admin, auditor."""
    return limits_public(name, stored_limits.get_by_name(db, name), limiter.settings)


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
    stored = stored_limits.set_overrides(
        db,
        name=name,
        overrides=Overrides(**body.model_dump()),
        actor=admin.name,
        request_id=request_id,
    )
    limiter.forget(accounts.get_consumer(db, name).id)
    return limits_public(name, stored, limiter.settings)
