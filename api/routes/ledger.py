"""The ledger: read, verify and export (admin and auditor)."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, time
from typing import Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from api.deps import AdminOrAuditor, DbDep, SettingsDep
from api.openapi import problems
from api.problems import InvalidRequest
from api.schemas import LedgerDiscrepancy, LedgerEntryPublic, LedgerVerification, Page
from db import ledger, reconcile
from db.engine import Database
from db.ledger import LedgerFilter

router = APIRouter(prefix="/v1/ledger", tags=["ledger (admin, auditor)"])
_CURSOR = re.compile(r"seq:([0-9]{1,19})")
MAX_SEQ = 2**63 - 1
EXPORT_FIELDS = (
    "seq",
    "time",
    "kind",
    "actor",
    "consumer",
    "dataset",
    "cost",
    "request_id",
    "details",
    "prev_hash",
    "hash",
)


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


def encode_cursor(seq: int) -> str:
    """An opaque cursor continuing after ``seq``."""
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    """The seq a cursor continues after (0 for no cursor); InvalidRequest if malformed."""
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        match = _CURSOR.fullmatch(text)
        if match is None or int(match[1]) > MAX_SEQ:  # seqs are BIGINT in the database
            raise ValueError
        return int(match[1])
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("the cursor is not valid") from None


def _filters(
    consumer: str | None,
    dataset: str | None,
    kind: str | None,
    since: str | None,
    until: str | None,
) -> LedgerFilter:
    if kind is not None and kind not in ledger.KINDS:
        raise InvalidRequest(f"unknown kind {kind[:40]!r}; one of {', '.join(ledger.KINDS)}")
    return LedgerFilter(
        consumer=consumer,
        dataset=dataset,
        kind=kind,
        since=_ledger_time(since, end_of_day=False),
        until=_ledger_time(until, end_of_day=True),
    )


@router.get("", response_model=Page[LedgerEntryPublic], responses=problems(401, 403, 422))
def list_entries(
    _: AdminOrAuditor,
    db: DbDep,
    settings: SettingsDep,
    consumer: str | None = Query(default=None, max_length=64),
    dataset: str | None = Query(default=None, max_length=64),
    kind: str | None = Query(default=None, max_length=32),
    since: str | None = Query(default=None, max_length=40, description="inclusive ISO 8601"),
    until: str | None = Query(default=None, max_length=40, description="inclusive ISO 8601"),
    limit: int = Query(default=100, ge=1, le=1000),
    cursor: str | None = Query(default=None, max_length=64),
) -> Page[LedgerEntryPublic]:
    """Ledger entries, oldest first, filtered and paginated: a page holds at most `limit`
    entries and at most the server's byte budget of encoded entries (default 4 MiB), but
    always one. Roles: admin, auditor."""
    filters = _filters(consumer, dataset, kind, since, until)
    with db.read() as session:
        rows, next_after = ledger.page(
            session,
            filters,
            after_seq=decode_cursor(cursor),
            limit=limit,
            max_bytes=settings.limits.ledger_page_bytes,
        )
        items = [LedgerEntryPublic(**ledger.entry_document(e)) for e in rows]
    return Page[LedgerEntryPublic](
        items=items, next_cursor=encode_cursor(next_after) if next_after is not None else None
    )


@router.get("/verify", response_model=LedgerVerification, responses=problems(401, 403))
def verify(_: AdminOrAuditor, db: DbDep) -> LedgerVerification:
    """Re-compute the hash chain and reconcile budgets, caps and releases with it, in one
    snapshot and one streamed pass; report what disagrees. Roles: admin, auditor."""
    return verification(*reconcile.verify(db))


def verification(chain: ledger.Verification, found: reconcile.Reconciliation) -> LedgerVerification:
    """The public form of a chain verification and a reconciliation."""
    return LedgerVerification(
        valid=chain.valid and found.reconciled,
        entries=chain.entries,
        head=chain.head,
        first_bad_seq=chain.first_bad_seq,
        chain_valid=chain.valid,
        reconciled=found.reconciled,
        discrepancy_count=found.total,
        discrepancies=[LedgerDiscrepancy.model_validate(d) for d in found.discrepancies],
    )


def export_lines(db: Database, fmt: str) -> Iterator[str]:
    """The whole ledger as CSV rows (with a header) or JSON lines, oldest first, in batches."""
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(EXPORT_FIELDS)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    with db.read() as session:
        for entry in ledger.iterate(session):
            document = ledger.entry_document(entry)
            if fmt == "jsonl":
                yield json.dumps(document, separators=(",", ":"), ensure_ascii=False) + "\n"
                continue
            writer.writerow(
                [
                    json.dumps(document[f], separators=(",", ":"), ensure_ascii=False)
                    if f in ("cost", "details")
                    else document[f]
                    for f in EXPORT_FIELDS
                ]
            )
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}, "application/x-ndjson": {}}},
        **problems(401, 403, 422),
    },
)
def export(
    _: AdminOrAuditor, db: DbDep, format: Literal["csv", "jsonl"] = Query(default="jsonl")
) -> StreamingResponse:
    """The whole ledger, oldest first, streamed as CSV or JSON lines. Roles: admin, auditor."""
    media = "text/csv" if format == "csv" else "application/x-ndjson"
    return StreamingResponse(
        export_lines(db, format),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="ruis-ledger.{format}"'},
    )
