"""The ledger: read, verify and export (admin and auditor)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from api.deps import AdminOrAuditor, DbDep, SettingsDep
from api.openapi import problems
from api.schemas import LedgerEntryPublic, LedgerVerification, Page
from api.services import ledger as service

router = APIRouter(prefix="/v1/ledger", tags=["ledger (admin, auditor)"])


@router.get(
    "",
    response_model=Page[LedgerEntryPublic],
    response_model_exclude_unset=True,  # key_id: absent where the entry has none
    responses=problems(401, 403, 422),
)
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
    filters = service.ledger_filter(
        consumer=consumer, dataset=dataset, kind=kind, since=since, until=until
    )
    return service.list_entries(
        db, filters, limit=limit, cursor=cursor, max_bytes=settings.limits.ledger_page_bytes
    )


@router.get("/verify", response_model=LedgerVerification, responses=problems(401, 403))
def verify(_: AdminOrAuditor, db: DbDep) -> LedgerVerification:
    """Re-compute the hash chain and reconcile budgets, caps and releases with it, in one
    snapshot and one streamed pass; report what disagrees. Roles: admin, auditor."""
    return service.verify_ledger(db)


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
        service.export_lines(db, format),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="ruis-ledger.{format}"'},
    )
