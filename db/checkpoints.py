"""The checkpoints served or cosigned, and the witnesses' cosignatures of them.

A checkpoint is derived (the tree at a size, signed): what is kept is which sizes
were shown to someone, with their root, so auditors see the history, and each
witness's cosignature line, served again with the checkpoint at that size. A witness
name belongs to the auditor who first cosigned under it, so another auditor cannot
add lines in its name (a line is checked against the key it names anyway).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import Session, col, select

from db import ledger_tree
from db.engine import Database
from db.errors import AlreadyExists, CheckpointMismatch
from db.models import LedgerCheckpoint, LedgerCosignature, LedgerWitness


@dataclass(frozen=True)
class StoredCosignature:
    """One witness's cosignature of the checkpoint at ``size``."""

    size: int
    witness: str
    key_id: str
    vkey: str
    timestamp: int
    line: str


@dataclass(frozen=True)
class CheckpointRecord:
    """A size whose checkpoint was served or cosigned, and who cosigned it."""

    size: int
    root: bytes
    created_at: datetime
    witnesses: tuple[str, ...]


def record(db: Database, size: int, root: bytes) -> None:
    """Remember that the checkpoint at ``size`` (with ``root``) was shown (idempotent; a
    size already recorded takes no write transaction)."""
    with db.read() as session:
        if session.get(LedgerCheckpoint, size) is not None:
            return
    with db.write() as session:
        _record(session, size, root)


def _record(session: Session, size: int, root: bytes) -> None:
    if session.get(LedgerCheckpoint, size) is None:
        session.add(LedgerCheckpoint(size=size, root=root, created_at=datetime.now(UTC)))


def recorded_roots(session: Session, *, batch: int = 1000) -> Iterator[tuple[int, bytes]]:
    """Every recorded checkpoint's size and root, smallest size first, read in batches."""
    after = 0
    while True:
        rows = session.exec(
            select(col(LedgerCheckpoint.size), col(LedgerCheckpoint.root))
            .where(col(LedgerCheckpoint.size) > after)
            .order_by(col(LedgerCheckpoint.size))
            .limit(batch)
        ).all()
        if not rows:
            return
        for size, root in rows:
            yield int(size), bytes(root)
        after = int(rows[-1][0])


def cosignatures(session: Session, size: int) -> list[StoredCosignature]:
    """The stored cosignatures of the checkpoint at ``size``, by witness name."""
    rows = session.exec(
        select(LedgerCosignature)
        .where(LedgerCosignature.size == size)
        .order_by(col(LedgerCosignature.witness), col(LedgerCosignature.key_id))
    ).all()
    return [
        StoredCosignature(r.size, r.witness, r.key_id, r.vkey, r.timestamp, r.line) for r in rows
    ]


def add_cosignature(
    db: Database, *, consumer_id: int, size: int, root: bytes, cosignature: StoredCosignature
) -> None:
    """Store a verified cosignature of this ledger's checkpoint at ``size``.

    CheckpointMismatch when ``root`` is not the ledger's root at ``size`` (checked in the same
    transaction); AlreadyExists when another auditor holds the witness name. A newer
    cosignature by the same key for the same size replaces the older one."""
    with db.write() as session:
        try:
            ours: bytes | None = ledger_tree.root(session, size)
        except ledger_tree.TreeSizeError:  # a size past our end: the witness saw more
            ours = None
        if ours != root:
            raise CheckpointMismatch(f"the checkpoint at size {size} is not this ledger's")
        holder = session.get(LedgerWitness, cosignature.witness)
        if holder is None:
            session.add(
                LedgerWitness(
                    name=cosignature.witness, consumer_id=consumer_id, created_at=datetime.now(UTC)
                )
            )
        elif holder.consumer_id != consumer_id:
            raise AlreadyExists(f"the witness name {cosignature.witness!r} is another auditor's")
        _record(session, size, root)
        stored = session.get(LedgerCosignature, (size, cosignature.witness, cosignature.key_id))
        if stored is None:
            stored = LedgerCosignature(
                size=size,
                witness=cosignature.witness,
                key_id=cosignature.key_id,
                vkey=cosignature.vkey,
                timestamp=cosignature.timestamp,
                line=cosignature.line,
                created_at=datetime.now(UTC),
            )
        elif cosignature.timestamp <= stored.timestamp:
            return
        stored.vkey, stored.timestamp, stored.line = (
            cosignature.vkey,
            cosignature.timestamp,
            cosignature.line,
        )
        session.add(stored)


def history(
    session: Session, *, before: int | None, limit: int
) -> tuple[list[CheckpointRecord], int | None]:
    """Checkpoints served or cosigned, newest first; and the size to continue before."""
    query = select(LedgerCheckpoint).order_by(col(LedgerCheckpoint.size).desc())
    if before is not None:
        query = query.where(col(LedgerCheckpoint.size) < before)
    rows = list(session.exec(query.limit(limit + 1)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    sizes = [r.size for r in rows]
    names: dict[int, list[str]] = {s: [] for s in sizes}
    if sizes:
        for size, witness in session.exec(
            select(col(LedgerCosignature.size), col(LedgerCosignature.witness))
            .where(col(LedgerCosignature.size).in_(sizes))
            .order_by(col(LedgerCosignature.witness))
        ).all():
            names[size].append(witness)
    records = [
        CheckpointRecord(r.size, bytes(r.root), r.created_at, tuple(names[r.size])) for r in rows
    ]
    return records, rows[-1].size if more and rows else None
