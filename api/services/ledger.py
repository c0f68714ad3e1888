"""The ledger: read a page of it, verify it and export it (admin and auditor)."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, time
from typing import Literal

from api import ledger_csv
from api.problems import InvalidRequest
from api.schemas import LedgerDiscrepancy, LedgerEntryPublic, LedgerVerification, Page
from db import ledger, reconcile
from db.engine import Database
from db.ledger import LedgerFilter

ExportFormat = Literal["csv", "jsonl"]
_CURSOR = re.compile(r"(seq|before):([0-9]{1,19})")
MAX_SEQ = 2**63 - 1


def _ledger_time(value: str | None, *, end_of_day: bool) -> str | None:
    if value is None:
        return None
    try:
        if len(value) == 10:  # a date: the whole day is inclusive
            day = datetime.fromisoformat(value).date()
            moment = datetime.combine(day, time.max if end_of_day else time.min, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: an offset past year 1 or 9999
        raise InvalidRequest(f"{value[:40]!r} is not an ISO 8601 time") from None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def encode_cursor(seq: int, *, descending: bool = False) -> str:
    """An opaque cursor continuing after ``seq`` (before it, for newest-first pages)."""
    text = f"{'before' if descending else 'seq'}:{seq}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, *, descending: bool = False) -> int:
    """The seq a cursor continues after (before, newest first; 0 for no cursor);
    InvalidRequest if malformed or made for the other order."""
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        match = _CURSOR.fullmatch(text)
        if match is None or int(match[2]) > MAX_SEQ:  # seqs are BIGINT in the database
            raise ValueError
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("the cursor is not valid") from None
    if (match[1] == "before") != descending:
        raise InvalidRequest("the cursor was made for the other order")
    return int(match[2])


def ledger_filter(
    *,
    consumer: str | None = None,
    dataset: str | None = None,
    kind: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> LedgerFilter:
    """The filter of a ledger read; ``since`` and ``until`` are inclusive ISO 8601 times
    or dates (a date: the whole day). InvalidRequest for an unknown kind or a bad time."""
    if kind is not None and kind not in ledger.KINDS:
        raise InvalidRequest(f"unknown kind {kind[:40]!r}; one of {', '.join(ledger.KINDS)}")
    return LedgerFilter(
        consumer=consumer,
        dataset=dataset,
        kind=kind,
        since=_ledger_time(since, end_of_day=False),
        until=_ledger_time(until, end_of_day=True),
    )


def list_entries(
    db: Database,
    filters: LedgerFilter,
    *,
    limit: int,
    cursor: str | None,
    max_bytes: int,
    descending: bool = False,
) -> Page[LedgerEntryPublic]:
    """One page of entries, oldest first (newest first with ``descending``): at most
    ``limit`` entries and ``max_bytes`` of encoded entries, but always one;
    ``next_cursor`` continues after it in the same order."""
    after_seq = decode_cursor(cursor, descending=descending)
    with db.read() as session:
        rows, next_after = ledger.page(
            session,
            filters,
            after_seq=after_seq,
            limit=limit,
            max_bytes=max_bytes,
            descending=descending,
        )
        items = [LedgerEntryPublic(**ledger.entry_document(e)) for e in rows]
    return Page[LedgerEntryPublic](
        items=items,
        next_cursor=encode_cursor(next_after, descending=descending)
        if next_after is not None
        else None,
    )


def verification(chain: ledger.Verification, found: reconcile.Reconciliation) -> LedgerVerification:
    """The public form of a chain verification and a reconciliation."""
    return LedgerVerification(
        valid=chain.valid and found.reconciled and chain.tree_valid and chain.checkpoints_valid,
        entries=chain.entries,
        head=chain.head,
        first_bad_seq=chain.first_bad_seq,
        chain_valid=chain.valid,
        reconciled=found.reconciled,
        discrepancy_count=found.total,
        discrepancies=[LedgerDiscrepancy.model_validate(d) for d in found.discrepancies],
        tree_valid=chain.tree_valid,
        tree_first_bad_seq=chain.tree_first_bad_seq,
        root=base64.b64encode(chain.root).decode() if chain.root is not None else None,
        checkpoints_valid=chain.checkpoints_valid,
        checkpoint_first_bad_size=chain.checkpoint_first_bad_size,
    )


def verify_ledger(db: Database) -> LedgerVerification:
    """Re-compute the hash chain and reconcile budgets, caps and releases with it, in one
    snapshot and one streamed pass."""
    return verification(*reconcile.verify(db))


def export_lines(
    db: Database, fmt: ExportFormat, filters: LedgerFilter | None = None
) -> Iterator[str]:
    """The entries matching ``filters`` (all by default), oldest first, read in batches
    (memory stays bounded): JSON lines of the complete entry documents (what ``ruis
    verify`` checks), or CSV with a header, one flat row per entry (:mod:`api.ledger_csv`)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    if fmt == "csv":
        writer.writerow(ledger_csv.COLUMNS)
        yield buffer.getvalue()
    with db.read() as session:
        for entry in ledger.iterate(session, filters):
            document = ledger.entry_document(entry)
            if fmt == "jsonl":
                yield json.dumps(document, separators=(",", ":"), ensure_ascii=False) + "\n"
                continue
            buffer.seek(0)
            buffer.truncate()
            writer.writerow(ledger_csv.row(document))
            yield buffer.getvalue()
