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
    order: Literal["asc", "desc"] = Query(
        default="asc", description="`asc`: oldest first; `desc`: newest first"
    ),
) -> Page[LedgerEntryPublic]:
    """Ledger entries, oldest first (or newest first with `order=desc`), filtered and
    paginated: a page holds at most `limit` entries and at most the server's byte budget of
    encoded entries (default 4 MiB), but always one; `next_cursor` continues in the same
    order (a cursor of the other order is a 422). Roles: admin, auditor."""
    filters = service.ledger_filter(
        consumer=consumer, dataset=dataset, kind=kind, since=since, until=until
    )
    return service.list_entries(
        db,
        filters,
        limit=limit,
        cursor=cursor,
        max_bytes=settings.limits.ledger_page_bytes,
        descending=order == "desc",
    )


@router.get("/verify", response_model=LedgerVerification, responses=problems(401, 403))
def verify(_: AdminOrAuditor, db: DbDep) -> LedgerVerification:
    """Re-compute the hash chain and reconcile budgets, caps and releases with it, in one
    snapshot and one streamed pass; report what disagrees. Roles: admin, auditor."""
    return service.verify_ledger(db)


EXPORT_NOTES = """The ledger's entries, oldest first, streamed in batches; the same filters as
`GET /v1/ledger` (`consumer`, `dataset`, `kind`, inclusive `since`/`until`), and a bad one is
a 422 before anything is streamed. Roles: admin, auditor.

`format=jsonl` (default): one complete entry document per line, exactly as `GET /v1/ledger`
returns it, released rows included: the form `ruis verify` checks (each `hash` is the
SHA-256 of the canonical JSON of the entry without `hash`; `prev_hash` chains them).

`format=csv`: one flat row per entry for spreadsheets, not for verification. Columns:
`seq`; `time` (UTC ISO 8601); `kind`; `actor`; `key_id` (the API key that acted, when one
did); `consumer`; `dataset`; `model`, `epsilon`, `rho` (the entry's cost, plain numbers,
empty when it has none: `epsilon` for pure DP, `rho` for zCDP; a refusal costs 0);
`delta` (the cost's δ, or a release's private-key selection δ); `request_id`;
`release_id`; `statistic`; `mechanism`; `noise_scale`; `status` (of a release's output:
`done`, `failed`); `reason` (of a refusal or failure); `rows_released` (how many rows a
release output released; the rows themselves are only in JSONL); `details` (the compact
JSON of the entry's details without the released rows); `details_complete` (`false` when
`details` was cut to fit a cell); `prev_hash`; `hash`. No cell exceeds 32,767 characters
(Excel's limit). Text cells starting with `=`, `+`, `-`, `@`, a tab or a carriage return
get a leading `'` (against formula injection); the numeric columns (`seq`, `epsilon`,
`rho`, `delta`, `noise_scale`, `rows_released`) hold only numbers and are never changed."""


@router.get(
    "/export",
    response_class=StreamingResponse,
    description=EXPORT_NOTES,
    responses={
        200: {"content": {"text/csv": {}, "application/x-ndjson": {}}},
        **problems(401, 403, 422),
    },
)
def export(
    _: AdminOrAuditor,
    db: DbDep,
    format: Literal["csv", "jsonl"] = Query(default="jsonl"),
    consumer: str | None = Query(default=None, max_length=64),
    dataset: str | None = Query(default=None, max_length=64),
    kind: str | None = Query(default=None, max_length=32),
    since: str | None = Query(default=None, max_length=40, description="inclusive ISO 8601"),
    until: str | None = Query(default=None, max_length=40, description="inclusive ISO 8601"),
) -> StreamingResponse:
    """The ledger's entries matching the filters, oldest first, streamed as JSON lines or
    flat CSV (see the notes). Roles: admin, auditor."""
    filters = service.ledger_filter(
        consumer=consumer, dataset=dataset, kind=kind, since=since, until=until
    )  # a 422 here, before the stream starts
    media = "text/csv" if format == "csv" else "application/x-ndjson"
    return StreamingResponse(
        service.export_lines(db, format, filters),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="ruis-ledger.{format}"'},
    )
