"""Queries: run, preview and re-read differentially private releases (analysts)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api import release
from api.deps import Analyst, DbDep, LogDep, RequestIdDep, SettingsDep
from api.limits import Limiter, get_limiter
from api.openapi import problems
from api.problems import Problem
from api.release_body import QueryPreview, QueryResponse, QuerySummary
from api.schemas import Page
from privacy import QueryRequest

router = APIRouter(prefix="/v1/queries", tags=["queries (analyst)"])
_PROBLEMS: dict[int | str, dict[str, object]] = {
    status: {"model": Problem, "content": {"application/problem+json": {}}}
    for status in (401, 403, 404, 422)
}
LimiterDep = Annotated[Limiter, Depends(get_limiter)]
_LIMITS = {
    422: "Invalid query (`invalid-query`, `invalid-request`), too many cells "
    "(`too-many-cells`) or a cost below the minimum per release "
    "(`cost-below-minimum`); nothing is spent.",
    429: "Too many requests per minute, or no slot became free within the queue "
    "timeout (`too-many-requests`, with `Retry-After` and `reason` "
    "`rate_limited` or `concurrency_limit`); nothing is spent, and the refusal "
    "is ledgered.",
}


def _as_json(answer: Callable[..., BaseModel], *args: Any) -> Response:
    """``answer(*args)`` serialised to JSON in the calling worker thread.

    A million-cell release is tens of MB of JSON: serialised by FastAPI after an
    ``async`` route returns, it would block the event loop (every other request)
    for seconds. The routes' ``response_model`` still documents the body.
    """
    return Response(answer(*args).model_dump_json(), media_type="application/json")


@router.post(
    "",
    response_model=QueryResponse,
    responses={
        **_PROBLEMS,
        409: {"model": Problem, "description": "budget-exceeded"},
        **problems(
            410,
            413,
            422,
            429,
            500,
            503,
            notes={
                **_LIMITS,
                500: "The release failed after its cost was debited; the cost is "
                "not refunded (`release-failed`).",
                503: "An identical query is still being computed; ask again "
                "shortly (`release-in-progress`). Or the dataset is "
                "suspended: its file changed or cannot be read; nothing "
                "is charged (`dataset-unavailable`). Or its values were "
                "computed but could not be stored yet (`release-pending`, "
                "with `release_id` and `Retry-After`): the same query "
                "asked again is answered with them, without a second "
                "debit.",
            },
        ),
    },
)
async def run_query(
    body: QueryRequest,
    analyst: Analyst,
    db: DbDep,
    settings: SettingsDep,
    request_id: RequestIdDep,
    limiter: LimiterDep,
    log_signer: LogDep,
) -> Response:
    """Run a query: debit its cost, then release DP values. Repeats are served from cache.
    The answer carries a `receipt`: its ledger entry, proven in a signed checkpoint."""
    async with limiter.admit(
        db,
        analyst,
        gateway="release",
        dataset=body.dataset,
        request_id=request_id,
        cells=lambda: release.cells_of(db, analyst, body),
    ) as guard:
        return await run_in_threadpool(
            _as_json, release.run, db, settings, analyst, body, request_id, guard, log_signer
        )


@router.post(
    "/preview",
    response_model=QueryPreview,
    responses={
        **_PROBLEMS,
        **problems(
            410,
            413,
            422,
            429,
            503,
            notes={**_LIMITS, 503: "The dataset is suspended (`dataset-unavailable`)."},
        ),
    },
)
async def preview_query(
    body: QueryRequest, analyst: Analyst, db: DbDep, request_id: RequestIdDep, limiter: LimiterDep
) -> Response:
    """What a query would cost and how accurate it would be; reads no data, spends nothing."""
    async with limiter.admit(
        db,
        analyst,
        gateway="preview",
        dataset=body.dataset,
        request_id=request_id,
        cells=lambda: release.cells_of(db, analyst, body),
    ) as guard:
        return await run_in_threadpool(_as_json, release.preview, db, analyst, body, guard)


@router.get("", response_model=Page[QuerySummary], responses=_PROBLEMS)
def list_queries(
    analyst: Analyst,
    db: DbDep,
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = Query(default=None, max_length=64),
) -> Page[QuerySummary]:
    """Your releases, newest first, without their values."""
    items, next_cursor = release.list_releases(db, analyst, after=cursor, limit=limit)
    return Page[QuerySummary](items=items, next_cursor=next_cursor)


@router.get("/{release_id}", response_model=QueryResponse, responses=_PROBLEMS)
def get_query(
    release_id: str, analyst: Analyst, db: DbDep, request_id: RequestIdDep, log_signer: LogDep
) -> QueryResponse:
    """Re-read one of your releases at no cost, with a receipt as of now."""
    return release.reread(db, analyst, release_id, request_id, log_signer)
