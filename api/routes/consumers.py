"""Consumers and API keys (admin only)."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import Admin, DbDep, RequestIdDep
from api.openapi import problems
from api.schemas import ConsumerCreate, ConsumerCreated, ConsumerPublic, KeyCreated, KeyPublic, Page
from api.services import Actor
from api.services import consumers as service

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
    return service.create_consumer(db, body, actor=Actor.of(admin), request_id=request_id)


@router.get("", response_model=Page[ConsumerPublic], responses=problems(401, 403))
def list_consumers(admin: Admin, db: DbDep) -> Page[ConsumerPublic]:
    """List consumers. Role: admin."""
    return service.list_consumers(db)


@router.post(
    "/{name}/keys",
    status_code=status.HTTP_201_CREATED,
    response_model=KeyCreated,
    responses=problems(401, 403, 404, 422),
)
def issue_key(name: str, admin: Admin, db: DbDep, request_id: RequestIdDep) -> KeyCreated:
    """Issue another API key for a consumer (shown once). Role: admin."""
    return service.issue_key(db, name, actor=Actor.of(admin), request_id=request_id)


@router.get("/{name}/keys", response_model=Page[KeyPublic], responses=problems(401, 403, 404, 422))
def list_keys(name: str, admin: Admin, db: DbDep) -> Page[KeyPublic]:
    """List a consumer's keys: ids, prefixes and dates, never secrets. Role: admin."""
    return service.list_keys(db, name)


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
    return service.revoke_key(db, name, key_id, actor=Actor.of(admin), request_id=request_id)
