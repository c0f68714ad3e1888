"""The append-only, hash-chained ledger.

Each entry's ``hash`` is the SHA-256 of the canonical JSON of every other field
(``seq``, ``time``, ``kind``, ``actor``, ``consumer``, ``dataset``, ``cost``,
``request_id``, ``details``, ``prev_hash`` and, on an entry made with an API key,
``key_id``), and ``prev_hash`` is the hash of the entry before it (64 zeros for the
first). Changing, removing or reordering a stored entry breaks the chain at that entry,
which :func:`verify` reports. Each append also adds the entry's leaf to the RFC 9162
Merkle tree (:mod:`db.ledger_tree`), whose signed checkpoints let outsiders hold the
ledger to what it said before: a rewritten chain is internally valid, but not
consistent with an earlier checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from db import checkpoints, ledger_tree
from db.models import LedgerEntry, LedgerHead
from tlog import merkle

GENESIS_HASH = "0" * 64
KINDS = (
    "consumer_created",
    "key_issued",
    "key_revoked",
    "dataset_registered",
    "budget_set",
    "release",
    "release_output",
    "reread",
    "refused",
    "limits_set",
    "dataset_suspended",
    "dataset_reinstated",
    "dataset_fingerprinted",
    "dataset_version_added",
    "dataset_retired",
)


ACTING_KEY: ContextVar[str | None] = ContextVar("ruis_acting_key", default=None)
"""The API key the current request was authenticated with (set by the HTTP edge once
it has authenticated the caller): every entry appended while it is set carries it as
``key_id``."""


def canonical_json(value: Any) -> str:
    """The canonical JSON text that is hashed: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def now_iso() -> str:
    """The current UTC time as fixed-width ISO 8601 with milliseconds (sorts as text)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def entry_document(entry: LedgerEntry) -> dict[str, Any]:
    """The public JSON form of an entry (what the API returns and the hash covers, plus hash)."""
    document: dict[str, Any] = {
        "seq": entry.seq,
        "time": entry.time,
        "kind": entry.kind,
        "actor": entry.actor,
        "consumer": entry.consumer,
        "dataset": entry.dataset,
        "cost": json.loads(entry.cost_json) if entry.cost_json is not None else None,
        "request_id": entry.request_id,
        "details": json.loads(entry.details_json),
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }
    if entry.key_id is not None:  # absent (not null) without a key: older hashes hold
        document["key_id"] = entry.key_id
    return document


def compute_hash(document: dict[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of ``document`` without its ``hash`` field."""
    body = {k: v for k, v in document.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def append(
    session: Session,
    *,
    kind: str,
    actor: str,
    details: dict[str, Any],
    consumer: str | None = None,
    dataset: str | None = None,
    cost: dict[str, Any] | None = None,
    request_id: str | None = None,
    key_id: str | None = None,
) -> LedgerEntry:
    """Append one entry to the chain and its leaf to the Merkle tree, inside the caller's
    write transaction.

    Must run in a :meth:`db.engine.Database.write` session, which holds the
    ledger-head lock, so ``seq``, ``prev_hash`` and the leaf cannot be taken twice.
    ``key_id`` defaults to :data:`ACTING_KEY`.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown ledger kind {kind!r}")
    head = session.get(LedgerHead, 1)
    if head is None:  # pragma: no cover - created by the first migration
        raise RuntimeError("ledger head row is missing; run migrations")
    cost_json = canonical_json(cost) if cost is not None else None
    details_json = canonical_json(details)
    entry = LedgerEntry(
        seq=head.seq + 1,
        time=now_iso(),
        kind=kind,
        actor=actor,
        consumer=consumer,
        dataset=dataset,
        cost_json=cost_json,
        request_id=request_id,
        details_json=details_json,
        prev_hash=head.hash,
        hash="",
        key_id=key_id if key_id is not None else ACTING_KEY.get(),
    )
    entry.hash = compute_hash(entry_document(entry))
    ledger_tree.append_leaf(session, head, entry.seq - 1, entry.hash)
    head.seq = entry.seq
    head.hash = entry.hash
    session.add(entry)
    session.add(head)
    session.flush()
    return entry


@dataclass(frozen=True)
class Verification:
    """The result of re-computing the chain."""

    valid: bool
    entries: int
    head: str | None = None
    first_bad_seq: int | None = None
    tree_valid: bool = True
    tree_first_bad_seq: int | None = None
    root: bytes | None = None
    """The Merkle root recomputed from the entries verified (None if the chain broke)."""
    checkpoints_valid: bool = True
    checkpoint_first_bad_size: int | None = None
    """The smallest recorded checkpoint whose root the entries no longer give (or whose
    size is past the last entry): the history was rewritten or cut after it was shown."""


class _TreeCheck:
    """Rebuilds the Merkle tree from verified entries and compares it, batch by batch,
    with the stored nodes (which receipts and proofs are made of)."""

    def __init__(self, recorded: Iterator[tuple[int, bytes]]) -> None:
        self.frontier = merkle.Frontier()
        self.expected: dict[merkle.Node, bytes] = {}
        self.first_bad_seq: int | None = None
        self.recorded = recorded
        self.next_recorded = next(recorded, None)
        self.bad_checkpoint: int | None = None

    def add(self, entry_hash: str) -> None:
        self.expected.update(self.frontier.append(merkle.leaf_hash(bytes.fromhex(entry_hash))))
        while self.next_recorded is not None and self.next_recorded[0] <= self.frontier.size:
            size, root = self.next_recorded
            if self.bad_checkpoint is None and root != self.frontier.root():
                self.bad_checkpoint = size
            self.next_recorded = next(self.recorded, None)

    def finish(self) -> None:
        """A recorded checkpoint past the last entry: the tail was cut after it was shown."""
        if self.next_recorded is not None and self.bad_checkpoint is None:
            self.bad_checkpoint = self.next_recorded[0]

    def compare(self, session: Session, first_index: int, last_index: int) -> None:
        if self.first_bad_seq is None and self.expected:
            stored = ledger_tree.stored_between(session, first_index, last_index)
            bad = [
                ((idx + 1) << level)
                for (level, idx), value in self.expected.items()
                if stored.get((level, idx)) != value
            ]
            if bad:  # the seq of the first leaf whose append wrote a wrong or missing node
                self.first_bad_seq = min(bad)
        self.expected = {}


def verify(
    session: Session,
    *,
    batch: int = 2000,
    visit: Callable[[LedgerEntry, dict[str, Any]], None] | None = None,
) -> Verification:
    """Re-compute every hash in order; report the first entry whose chain breaks, and
    check the stored Merkle tree against the entries.

    An entry is bad when its stored hash is not the hash of its fields, when its
    ``prev_hash`` is not the previous entry's hash, or when its ``seq`` skips.
    The ledger head row must also agree with the last entry. The tree is bad from the
    first entry whose leaf or completed subtrees are not what its hash gives (or when
    nodes beyond the head are stored); and every checkpoint recorded as served or
    cosigned must still be the root the entries give at its size. ``visit`` is called
    with each entry that verified and its document, in order (so one pass can also
    reconcile).
    """
    previous_hash = GENESIS_HASH
    expected_seq = 1
    count = 0
    last_seq = 0
    tree = _TreeCheck(checkpoints.recorded_roots(session))
    while True:
        rows, _ = page(
            session, LedgerFilter(), after_seq=last_seq, limit=batch, max_bytes=BATCH_BYTES
        )  # bounded in bytes, not only in entries
        if not rows:
            break
        first_index = count
        for entry in rows:
            if entry.seq != expected_seq:  # an entry is missing (or seqs were rewritten)
                return Verification(valid=False, entries=count, first_bad_seq=expected_seq)
            document = entry_document(entry)
            computed = compute_hash(document)
            if entry.prev_hash != previous_hash or computed != entry.hash:
                return Verification(valid=False, entries=count, first_bad_seq=entry.seq)
            previous_hash = entry.hash
            tree.add(entry.hash)
            if visit is not None:
                visit(entry, document)
            expected_seq += 1
            count += 1
            last_seq = entry.seq
        tree.compare(session, first_index, count - 1)
    head = session.get(LedgerHead, 1)
    if head is None or head.seq != count or head.hash != previous_hash:
        # The newest entries were removed or the last one rewritten with a new hash.
        truncated = head is not None and head.seq > count
        return Verification(
            valid=False, entries=count, first_bad_seq=count + 1 if truncated else max(count, 1)
        )
    tree.finish()
    if tree.first_bad_seq is None and ledger_tree.stored_count(
        session
    ) != ledger_tree.expected_count(count):
        tree.first_bad_seq = count + 1  # nodes stored beyond the last entry
    return Verification(
        valid=True,
        entries=count,
        head=previous_hash,
        tree_valid=tree.first_bad_seq is None,
        tree_first_bad_seq=tree.first_bad_seq,
        root=tree.frontier.root(),
        checkpoints_valid=tree.bad_checkpoint is None,
        checkpoint_first_bad_size=tree.bad_checkpoint,
    )


@dataclass(frozen=True)
class LedgerFilter:
    """Filters of ``GET /v1/ledger`` (all optional, ANDed; times inclusive)."""

    consumer: str | None = None
    dataset: str | None = None
    kind: str | None = None
    since: str | None = None
    until: str | None = None


def _filtered(query: Any, filters: LedgerFilter) -> Any:
    if filters.consumer is not None:
        query = query.where(LedgerEntry.consumer == filters.consumer)
    if filters.dataset is not None:
        query = query.where(LedgerEntry.dataset == filters.dataset)
    if filters.kind is not None:
        query = query.where(LedgerEntry.kind == filters.kind)
    if filters.since is not None:
        query = query.where(col(LedgerEntry.time) >= filters.since)
    if filters.until is not None:
        query = query.where(col(LedgerEntry.time) <= filters.until)
    return query


ENTRY_OVERHEAD_BYTES = 512
"""More than an entry's fields other than ``details`` and ``cost`` take once encoded."""
BATCH_BYTES = 16 * 2**20
"""Encoded bytes of entries one batch of :func:`iterate` and :func:`verify` holds at most
(beyond its first entry)."""


def encoded_size(entry: LedgerEntry) -> int:
    """Bytes of the entry's public JSON form, compact and UTF-8 (as the API sends it)."""
    return len(
        json.dumps(
            entry_document(entry), separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    )


def page(
    session: Session,
    filters: LedgerFilter,
    *,
    after_seq: int,
    limit: int,
    max_bytes: int | None = None,
    descending: bool = False,
) -> tuple[list[LedgerEntry], int | None]:
    """Entries matching ``filters`` with ``seq > after_seq``, oldest first; with
    ``descending``, those with ``seq < after_seq`` (0: from the newest), newest first.

    At most ``limit`` entries and, with ``max_bytes``, at most that many bytes of
    encoded entries (:func:`encoded_size`), but always at least one: the page is
    cut from the stored lengths before any large entry is loaded, then trimmed
    on the exact encoded sizes. Returns the entries and the seq to continue
    after (before, when descending), or None on the last page. One indexed range
    read either way: a page of the newest entries never reads the older ones.
    """
    seq = col(LedgerEntry.seq)
    older = seq < after_seq if after_seq > 0 else seq > 0  # newest first; 0: from the newest
    beyond = older if descending else seq > after_seq
    order = seq.desc() if descending else seq.asc()
    query = _filtered(select(LedgerEntry), filters).where(beyond)
    if max_bytes is None:
        rows = list(session.exec(query.order_by(order).limit(limit + 1)).all())
        if len(rows) > limit:
            return rows[:limit], rows[limit - 1].seq
        return rows, None
    sizes = session.exec(
        _filtered(
            select(
                col(LedgerEntry.seq),
                func.length(LedgerEntry.details_json)
                + func.coalesce(func.length(LedgerEntry.cost_json), 0),
            ),
            filters,
        )
        .where(beyond)
        .order_by(order)
        .limit(limit + 1)
    ).all()
    if not sizes:
        return [], None
    chosen, total = 0, 0
    for _, length in sizes[:limit]:  # characters ≤ bytes: a first cut, never too small
        total += int(length or 0) + ENTRY_OVERHEAD_BYTES
        if chosen and total > max_bytes:
            break
        chosen += 1
    last_seq = sizes[chosen - 1][0]
    within = seq >= last_seq if descending else seq <= last_seq
    rows = list(session.exec(query.where(within).order_by(order)).all())
    kept: list[LedgerEntry] = []
    total = 0
    for entry in rows:
        total += encoded_size(entry)
        if kept and total > max_bytes:
            break
        kept.append(entry)
    more = len(kept) < len(sizes)
    return kept, kept[-1].seq if more else None


def iterate(
    session: Session,
    filters: LedgerFilter | None = None,
    *,
    batch: int = 1000,
    max_bytes: int = BATCH_BYTES,
) -> Iterator[LedgerEntry]:
    """Every entry matching ``filters``, oldest first, fetched in batches of at most
    ``batch`` entries and ``max_bytes`` encoded bytes (so memory stays bounded)."""
    after = 0
    while True:
        rows, next_after = page(
            session, filters or LedgerFilter(), after_seq=after, limit=batch, max_bytes=max_bytes
        )
        yield from rows
        if next_after is None:
            return
        after = next_after


def count(session: Session) -> int:
    """Number of entries."""
    return int(session.exec(select(func.count()).select_from(LedgerEntry)).one())
