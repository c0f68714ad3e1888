"""The first admin, from ``RUIS_BOOTSTRAP_ADMIN_KEY``: created, rotated, never weak.

The bootstrap key is chosen by an operator, not drawn by Ruis, so three rules
apply to it (and to no other key):

- **Strength.** Its estimated entropy must be at least 128 bits (see
  :func:`estimated_entropy_bits`), or start-up stops with a message saying why.
- **No prefix.** No character of it is stored or shown: its ``prefix`` is empty
  and its ``key_issued`` ledger entry says ``"origin": "environment"``.
- **Rotation.** When the variable changes (its hash matches no key), start-up
  logs it, issues the new secret to ``bootstrap-admin`` and revokes the keys
  that earlier values of the variable issued — never the keys the admin was
  issued through the API — all in one transaction, each change ledgered. A
  value whose key was revoked is not reinstated (a warning is logged).
"""

from __future__ import annotations

import enum
import logging
import math
from datetime import UTC, datetime

from sqlmodel import Session, col, select

from db import accounts, ledger
from db.engine import Database
from db.models import ApiKey, Consumer

MIN_ENTROPY_BITS = 128
ENVIRONMENT = "environment"
"""``ApiKey.origin`` of keys issued from ``RUIS_BOOTSTRAP_ADMIN_KEY``."""
_CLASSES: tuple[tuple[str, int], ...] = (
    ("abcdefghijklmnopqrstuvwxyz", 26),
    ("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 26),
    ("0123456789", 10),
    ("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", 32),
)
log = logging.getLogger("ruis.bootstrap")


class Outcome(enum.Enum):
    """What :func:`ensure_bootstrap_admin` did."""

    CREATED = "created"
    ROTATED = "rotated"
    UNCHANGED = "unchanged"
    REVOKED = "revoked"
    IGNORED = "ignored"


def _predictable(secret: str, i: int) -> bool:
    """Whether character ``i`` continues a run: a repeat (``aaaa``) or a step of ±1 (``1234``,
    ``dcba``) that the two characters before it started."""
    if i >= 1 and secret[i] == secret[i - 1]:
        return True
    if i < 2:
        return False
    step = ord(secret[i]) - ord(secret[i - 1])
    return abs(step) == 1 and step == ord(secret[i - 1]) - ord(secret[i - 2])


def _period(secret: str) -> int:
    """The length of the shortest block that ``secret`` repeats (its length if none)."""
    for period in range(1, len(secret)):
        if all(secret[i] == secret[i - period] for i in range(period, len(secret))):
            return period
    return len(secret)


def estimated_entropy_bits(secret: str) -> float:
    """An estimate of the entropy of an operator-chosen key, in bits.

    ``effective length × log2(alphabet)``: the alphabet is the sum of the sizes
    of the character classes the key uses (lower case 26, upper case 26, digits
    10, ASCII punctuation 32); the effective length counts characters not
    predictable from the ones before them (repeats and ±1 sequences do not
    count) and is at most the key's period (a key that repeats a block counts
    one block). A key drawn at random from its alphabet scores its true entropy
    or a little more; ``openssl rand -hex 16`` (128 random bits) scores about 155 bits,
    ``-hex 24`` about 230; ``aaaa…`` or ``abcabc…`` score next to nothing.
    """
    alphabet = sum(size for chars, size in _CLASSES if any(c in chars for c in secret))
    if alphabet <= 1:
        return 0.0
    effective = sum(1 for i in range(len(secret)) if not _predictable(secret, i))
    return min(effective, _period(secret)) * math.log2(alphabet)


def check_bootstrap_key(secret: str) -> None:
    """Raise ValueError, with a message for the operator, unless ``secret`` is printable ASCII
    without spaces and has at least 128 bits of :func:`estimated_entropy_bits`."""
    if not all("!" <= c <= "~" for c in secret):
        raise ValueError("RUIS_BOOTSTRAP_ADMIN_KEY must be printable ASCII without spaces")
    bits = estimated_entropy_bits(secret)
    if bits < MIN_ENTROPY_BITS:
        raise ValueError(
            f"RUIS_BOOTSTRAP_ADMIN_KEY is too weak: about {bits:.0f} bits of "
            f"entropy, at least {MIN_ENTROPY_BITS} needed (e.g. "
            f"`openssl rand -hex 24`)"
        )


def _now() -> datetime:
    return datetime.now(UTC)


def _rotate(session: Session, admin: Consumer, secret: str) -> None:
    old_keys = session.exec(
        select(ApiKey).where(
            ApiKey.consumer_id == admin.id,
            ApiKey.origin == ENVIRONMENT,
            col(ApiKey.revoked_at).is_(None),
        )
    ).all()
    accounts.issue_key_in(
        session, admin, actor="system", request_id=None, secret=secret, origin=ENVIRONMENT
    )
    for key in old_keys:
        key.revoked_at = _now()
        session.add(key)
        ledger.append(
            session,
            kind="key_revoked",
            actor="system",
            consumer=admin.name,
            request_id=None,
            details={"key_id": key.id, "reason": "RUIS_BOOTSTRAP_ADMIN_KEY changed"},
        )


def ensure_bootstrap_admin(db: Database, secret: str) -> Outcome:
    """Make ``secret`` the environment key of ``bootstrap-admin`` (see the module docstring).

    Creates ``bootstrap-admin`` when no admin exists (``CREATED``); rotates its
    environment key when ``secret`` is new (``ROTATED``); does nothing when
    ``secret`` is already an active key (``UNCHANGED``), a revoked one
    (``REVOKED``), or when admins exist but none is ``bootstrap-admin``
    (``IGNORED``). Raises ValueError when ``secret`` is too weak. Logs what it did.
    """
    check_bootstrap_key(secret)
    digest = accounts.hash_key(secret)
    with db.write() as session:
        existing = session.exec(select(ApiKey).where(ApiKey.key_hash == digest)).first()
        admin = session.exec(
            select(Consumer).where(Consumer.name == accounts.BOOTSTRAP_ADMIN)
        ).first()
        if existing is not None:
            outcome = Outcome.UNCHANGED if existing.revoked_at is None else Outcome.REVOKED
        elif admin is None:
            if session.exec(select(Consumer).where(Consumer.role == "admin")).first():
                outcome = Outcome.IGNORED
            else:
                admin = Consumer(name=accounts.BOOTSTRAP_ADMIN, role="admin", created_at=_now())
                session.add(admin)
                session.flush()
                ledger.append(
                    session,
                    kind="consumer_created",
                    actor="system",
                    consumer=admin.name,
                    request_id=None,
                    details={"name": admin.name, "role": "admin"},
                )
                accounts.issue_key_in(
                    session,
                    admin,
                    actor="system",
                    request_id=None,
                    secret=secret,
                    origin=ENVIRONMENT,
                )
                outcome = Outcome.CREATED
        elif admin.role != "admin":
            outcome = Outcome.IGNORED
        else:
            _rotate(session, admin, secret)
            outcome = Outcome.ROTATED
    _log(outcome)
    return outcome


def _log(outcome: Outcome) -> None:
    if outcome is Outcome.CREATED:
        log.info("created bootstrap-admin with the key RUIS_BOOTSTRAP_ADMIN_KEY")
    elif outcome is Outcome.ROTATED:
        log.warning(
            "RUIS_BOOTSTRAP_ADMIN_KEY changed: bootstrap-admin's key from the "
            "environment was rotated (the previous one is revoked)"
        )
    elif outcome is Outcome.REVOKED:
        log.warning(
            "RUIS_BOOTSTRAP_ADMIN_KEY is a revoked key and was not reinstated: "
            "set a new value to issue a new bootstrap key"
        )
    elif outcome is Outcome.IGNORED:
        log.warning("RUIS_BOOTSTRAP_ADMIN_KEY is ignored: admins exist but none is bootstrap-admin")
