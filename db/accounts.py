"""Consumers and their API keys.

Keys are 192 random bits (``secrets``), shown once; only their SHA-256 is
stored. A key has high entropy, so a fast hash is enough: no dictionary attack
applies, and a stolen table reveals no usable key. Lookup is by hash, and the
stored hash is compared with :func:`hmac.compare_digest` (constant time).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import Session, col, select

from db import ledger
from db.engine import Database
from db.errors import AlreadyExists, InvalidChange, NotFound
from db.models import ApiKey, Consumer

ROLES = ("analyst", "admin", "auditor")
KEY_PREFIX = "ruis_"
BOOTSTRAP_ADMIN = "bootstrap-admin"


def new_secret() -> str:
    """A new API key secret: ``ruis_`` and 32 URL-safe characters (192 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(24)


def hash_key(secret: str) -> str:
    """SHA-256 hex digest of a key secret: the only form in which keys are stored."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    consumer_id: int
    name: str
    role: str
    key_id: str


@dataclass(frozen=True)
class IssuedKey:
    """A key just created: the secret is returned here once and never again."""

    key_id: str
    prefix: str
    secret: str
    created_at: datetime


def _now() -> datetime:
    return datetime.now(UTC)


def _get_consumer(session: Session, name: str) -> Consumer:
    consumer = session.exec(select(Consumer).where(Consumer.name == name)).first()
    if consumer is None:
        raise NotFound(f"consumer {name!r} does not exist")
    return consumer


def issue_key_in(
    session: Session,
    consumer: Consumer,
    *,
    actor: str,
    request_id: str | None,
    secret: str | None = None,
    origin: str = "api",
) -> IssuedKey:
    """Issue a key to ``consumer`` in the caller's write transaction; ledgers ``key_issued``.

    A random key (``secret`` None) keeps its first 9 characters (``ruis_`` and 4
    random ones, 24 of its 192 bits) as its public prefix; an operator-chosen
    ``secret`` (``origin`` ``"environment"``) gets an empty prefix, so no part of it
    is stored or shown.
    """
    prefix = "" if secret is not None else None
    secret = secret or new_secret()
    key = ApiKey(
        id="key_" + secrets.token_hex(8),
        consumer_id=consumer.id or 0,
        prefix=secret[:9] if prefix is None else prefix,
        key_hash=hash_key(secret),
        created_at=_now(),
        origin=origin,
    )
    session.add(key)
    session.flush()
    details = {"key_id": key.id, "prefix": key.prefix}
    if origin != "api":
        details["origin"] = origin
    ledger.append(
        session,
        kind="key_issued",
        actor=actor,
        consumer=consumer.name,
        request_id=request_id,
        details=details,
    )
    return IssuedKey(key_id=key.id, prefix=key.prefix, secret=secret, created_at=key.created_at)


def create_consumer(
    db: Database, *, name: str, role: str, actor: str, request_id: str | None = None
) -> tuple[Consumer, IssuedKey]:
    """Create a consumer with one key; ledgers ``consumer_created`` and ``key_issued``."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    with db.write() as session:
        if session.exec(select(Consumer).where(Consumer.name == name)).first() is not None:
            raise AlreadyExists(f"consumer {name!r} already exists")
        consumer = Consumer(name=name, role=role, created_at=_now())
        session.add(consumer)
        session.flush()
        ledger.append(
            session,
            kind="consumer_created",
            actor=actor,
            consumer=name,
            request_id=request_id,
            details={"name": name, "role": role},
        )
        issued = issue_key_in(session, consumer, actor=actor, request_id=request_id)
        return consumer, issued


def issue_key(db: Database, *, name: str, actor: str, request_id: str | None = None) -> IssuedKey:
    """Issue another key for consumer ``name``; ledgers ``key_issued``."""
    with db.write() as session:
        return issue_key_in(
            session, _get_consumer(session, name), actor=actor, request_id=request_id
        )


def revoke_key(
    db: Database, *, name: str, key_id: str, actor: str, request_id: str | None = None
) -> ApiKey:
    """Revoke one key of ``name`` (idempotent); ledgers ``key_revoked`` the first time.

    Raises InvalidChange (409) instead when it is the last active key of any admin:
    without it, nobody could manage consumers, keys, datasets or budgets any more.
    """
    with db.write() as session:
        consumer = _get_consumer(session, name)
        key = session.get(ApiKey, key_id)
        if key is None or key.consumer_id != consumer.id:
            raise NotFound(f"key {key_id!r} of consumer {name!r} does not exist")
        if (
            key.revoked_at is None
            and consumer.role == "admin"
            and not _other_admin_key(session, key_id)
        ):
            raise InvalidChange(
                f"key {key_id!r} is the last active admin key: issue another "
                f"admin key before revoking it"
            )
        if key.revoked_at is None:
            key.revoked_at = _now()
            session.add(key)
            ledger.append(
                session,
                kind="key_revoked",
                actor=actor,
                consumer=name,
                request_id=request_id,
                details={"key_id": key_id},
            )
        return key


def _other_admin_key(session: Session, key_id: str) -> bool:
    """Whether an active key of an admin other than ``key_id`` exists."""
    return (
        session.exec(
            select(ApiKey.id)
            .join(Consumer, col(Consumer.id) == col(ApiKey.consumer_id))
            .where(Consumer.role == "admin", col(ApiKey.revoked_at).is_(None), ApiKey.id != key_id)
            .limit(1)
        ).first()
        is not None
    )


def list_consumers(db: Database) -> list[Consumer]:
    """All consumers, by name."""
    with db.read() as session:
        return list(session.exec(select(Consumer).order_by(col(Consumer.name))).all())


def get_consumer(db: Database, name: str) -> Consumer:
    """The consumer called ``name`` or NotFound."""
    with db.read() as session:
        return _get_consumer(session, name)


def list_keys(db: Database, name: str) -> list[ApiKey]:
    """The keys of ``name`` (ids, prefixes and dates; the hash is never shown)."""
    with db.read() as session:
        consumer = _get_consumer(session, name)
        return list(
            session.exec(
                select(ApiKey)
                .where(ApiKey.consumer_id == consumer.id)
                .order_by(col(ApiKey.created_at), col(ApiKey.id))
            ).all()
        )


def authenticate(db: Database, secret: str) -> Principal | None:
    """The consumer holding the unrevoked key ``secret``, or None."""
    digest = hash_key(secret)
    with db.read() as session:
        row = session.exec(
            select(ApiKey, Consumer)
            .join(Consumer, col(Consumer.id) == col(ApiKey.consumer_id))
            .where(ApiKey.key_hash == digest)
        ).first()
    if row is None:
        return None
    key, consumer = row
    if not hmac.compare_digest(key.key_hash, digest) or key.revoked_at is not None:
        return None
    return Principal(
        consumer_id=consumer.id or 0, name=consumer.name, role=consumer.role, key_id=key.id
    )
