"""Consumers and API keys (admin only)."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import Admin, DbDep, RequestIdDep
from api.openapi import problems
from api.schemas import ConsumerCreate, ConsumerCreated, ConsumerPublic, KeyCreated, KeyPublic, Page
from db import accounts

router = APIRouter(prefix="/v1/consumers", tags=["consumers (admin)"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ConsumerCreated,
    responses=problems(
        401, 403, 409, 413, 422, notes={409: "A consumer with this name exists (`conflict`)."}
    ),
)
def create_consumer(
    body: ConsumerCreate, admin: Admin, db: DbDep, request_id: RequestIdDep
) -> ConsumerCreated:
    """Create a consumer and its first API key (shown once). Role: admin."""
    consumer, key = accounts.create_consumer(
        db, name=body.name, role=body.role, actor=admin.name, request_id=request_id
    )
    return ConsumerCreated(
        id=consumer.id or 0,
        name=consumer.name,
        role=body.role,
        created_at=consumer.created_at,
        api_key=key.secret,
        key_id=key.key_id,
    )


@router.get("", response_model=Page[ConsumerPublic], responses=problems(401, 403))
def list_consumers(admin: Admin, db: DbDep) -> Page[ConsumerPublic]:
    """List consumers. Role: admin."""
    items = [
        ConsumerPublic.model_validate(c, from_attributes=True) for c in accounts.list_consumers(db)
    ]
    return Page[ConsumerPublic](items=items)


@router.post(
    "/{name}/keys",
    status_code=status.HTTP_201_CREATED,
    response_model=KeyCreated,
    responses=problems(401, 403, 404, 422),
)
def issue_key(name: str, admin: Admin, db: DbDep, request_id: RequestIdDep) -> KeyCreated:
    """Issue another API key for a consumer (shown once). Role: admin."""
    key = accounts.issue_key(db, name=name, actor=admin.name, request_id=request_id)
    return KeyCreated(
        id=key.key_id, prefix=key.prefix, created_at=key.created_at, api_key=key.secret
    )


@router.get("/{name}/keys", response_model=Page[KeyPublic], responses=problems(401, 403, 404, 422))
def list_keys(name: str, admin: Admin, db: DbDep) -> Page[KeyPublic]:
    """List a consumer's keys: ids, prefixes and dates, never secrets. Role: admin."""
    items = [
        KeyPublic(id=k.id, prefix=k.prefix, created_at=k.created_at, revoked_at=k.revoked_at)
        for k in accounts.list_keys(db, name)
    ]
    return Page[KeyPublic](items=items)


@router.delete(
    "/{name}/keys/{key_id}",
    response_model=KeyPublic,
    responses=problems(
        401, 403, 404, 409, 422, notes={409: "The key is the last active admin key (`conflict`)."}
    ),
)
def revoke_key(
    name: str, key_id: str, admin: Admin, db: DbDep, request_id: RequestIdDep
) -> KeyPublic:
    """Revoke one key; it stops working at once. Idempotent; never the last active admin
    key. Role: admin."""
    key = accounts.revoke_key(db, name=name, key_id=key_id, actor=admin.name, request_id=request_id)
    return KeyPublic(
        id=key.id, prefix=key.prefix, created_at=key.created_at, revoked_at=key.revoked_at
    )
