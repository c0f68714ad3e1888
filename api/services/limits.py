"""Per-consumer limits: an admin overrides the deployment's defaults for one consumer."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from api.limits import EffectiveLimits, Limiter
from api.services import Actor
from api.settings import LimitSettings
from db import accounts
from db import limits as stored_limits
from db.engine import Database
from db.limits import Overrides

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


def get_limits(db: Database, settings: LimitSettings, name: str) -> ConsumerLimitsPublic:
    """Consumer ``name``'s overrides and the limits in effect under ``settings``."""
    return limits_public(name, stored_limits.get_by_name(db, name), settings)


def set_limits(
    db: Database,
    settings: LimitSettings,
    name: str,
    body: LimitsOverrides,
    *,
    actor: Actor,
    request_id: str | None = None,
    limiter: Limiter | None = None,
) -> ConsumerLimitsPublic:
    """Replace consumer ``name``'s overrides (absent: the default); ledgers ``limits_set``.

    ``limiter`` (a serving process's) drops its cached copy of the old overrides.
    """
    stored = stored_limits.set_overrides(
        db,
        name=name,
        overrides=Overrides(**body.model_dump()),
        actor=actor.name,
        request_id=request_id,
    )
    if limiter is not None:
        limiter.forget(accounts.get_consumer(db, name).id)
    return limits_public(name, stored, settings)
