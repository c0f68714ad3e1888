"""Consumers and their API keys (admin only)."""

from __future__ import annotations

from api.schemas import ConsumerCreate, ConsumerCreated, ConsumerPublic, KeyCreated, KeyPublic, Page
from api.services import Actor
from db import accounts
from db.engine import Database
from db.models import ApiKey


def key_public(key: ApiKey) -> KeyPublic:
    """The public facts of a stored key (never the secret nor its hash)."""
    return KeyPublic(
        id=key.id, prefix=key.prefix, created_at=key.created_at, revoked_at=key.revoked_at
    )


def create_consumer(
    db: Database, body: ConsumerCreate, *, actor: Actor, request_id: str | None = None
) -> ConsumerCreated:
    """Create a consumer and its first API key (the secret is returned this once)."""
    consumer, key = accounts.create_consumer(
        db, name=body.name, role=body.role, actor=actor.name, request_id=request_id
    )
    return ConsumerCreated(
        id=consumer.id or 0,
        name=consumer.name,
        role=body.role,
        created_at=consumer.created_at,
        api_key=key.secret,
        key_id=key.key_id,
    )


def list_consumers(db: Database) -> Page[ConsumerPublic]:
    """Every consumer, by name."""
    return Page[ConsumerPublic](
        items=[
            ConsumerPublic.model_validate(c, from_attributes=True)
            for c in accounts.list_consumers(db)
        ]
    )


def issue_key(
    db: Database, name: str, *, actor: Actor, request_id: str | None = None
) -> KeyCreated:
    """Issue another API key for consumer ``name`` (the secret is returned this once)."""
    key = accounts.issue_key(db, name=name, actor=actor.name, request_id=request_id)
    return KeyCreated(
        id=key.key_id, prefix=key.prefix, created_at=key.created_at, api_key=key.secret
    )


def list_keys(db: Database, name: str) -> Page[KeyPublic]:
    """The keys of consumer ``name``: ids, prefixes and dates."""
    return Page[KeyPublic](items=[key_public(k) for k in accounts.list_keys(db, name)])


def revoke_key(
    db: Database, name: str, key_id: str, *, actor: Actor, request_id: str | None = None
) -> KeyPublic:
    """Revoke one key of ``name`` (idempotent; never the last active admin key)."""
    key = accounts.revoke_key(db, name=name, key_id=key_id, actor=actor.name, request_id=request_id)
    return key_public(key)
