"""RFC 9457 problem details: one error hierarchy, one table mapping it to HTTP.

Every error response of the service is ``application/problem+json`` with
``type``, ``title``, ``status`` and ``detail``. :data:`PROBLEM_TYPES` says, for
every error raised on purpose (the HTTP layer's :class:`ApiError` family,
``db.errors`` and ``privacy.errors``, which know nothing of HTTP), which status,
type and title clients see; one handler applies it. Details are written by us from
public information (names, declared metadata, amounts); no handler echoes a
data value, and unexpected exceptions become a generic 500 without internals.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from db.errors import (
    AlreadyExists,
    CheckpointMismatch,
    DbError,
    InvalidChange,
    InvalidInput,
    NotFound,
)
from privacy.errors import PrivacyError
from privacy.errors import ReleaseFailed as PrivacyReleaseFailed

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("ruis.api")


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None
    asked: dict[str, Any] | None = Field(
        default=None, description="budget-exceeded: what the query costs"
    )
    remaining: dict[str, Any] | None = None
    release_id: str | None = None


@dataclass(frozen=True)
class ProblemType:
    """What a client sees of an error: its HTTP status, problem type and title."""

    status: int
    type: str
    title: str


class ApiError(Exception):
    """An error of the HTTP layer with a public detail; its problem type is in
    :data:`PROBLEM_TYPES`. ``extra`` members are added to the problem document."""

    headers: dict[str, str] | None = None
    """Extra response headers (e.g. ``Retry-After``)."""

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    @property
    def problem(self) -> ProblemType:
        """The status, type and title clients see (:data:`PROBLEM_TYPES`)."""
        return problem_type(self)


class Unauthorized(ApiError):
    """Missing, malformed, unknown or revoked API key."""


class Forbidden(ApiError):
    """Valid key, but the role may not do this."""


class BudgetExceeded(ApiError):
    """The query's cost does not fit in the remaining budget or dataset cap."""


class InvalidRequest(ApiError):
    """A well-formed request that cannot be served as asked."""


class PayloadTooLarge(ApiError):
    """The request body is larger than the service accepts."""


class TooManyRequests(ApiError):
    """A rate or concurrency limit: retry after ``Retry-After`` seconds; nothing was spent."""

    def __init__(self, detail: str, *, retry_after: int, reason: str) -> None:
        super().__init__(detail, reason=reason)
        self.headers = {"Retry-After": str(retry_after)}


class TooManyCells(ApiError):
    """The query asks for more key combinations than this consumer may; nothing was spent."""


class CostBelowMinimum(ApiError):
    """The release would cost less than the minimum per release; nothing was spent."""


class DatasetUnavailable(ApiError):
    """The dataset is suspended: its file changed or cannot be read (nothing charged)."""


class DatasetRetired(ApiError):
    """The dataset is retired: no new release or preview (nothing charged)."""


class StorageUnavailable(ApiError):
    """The converted file could not be written (disk full or data directory read-only)."""


class EngineUnavailable(ApiError):
    """The dataset's engine (Spark) cannot be started or reached (nothing charged)."""


class ReleaseBusy(ApiError):
    """The same query is still being computed by an earlier request."""


class ReleaseFailed(ApiError):
    """The computation failed after the cost was debited (not refunded)."""

    @classmethod
    def of(cls, release_id: str) -> ReleaseFailed:
        """The problem for ``release_id`` (which the ledger records as failed)."""
        return cls(
            "the release could not be computed; its cost was debited and is not refunded",
            release_id=release_id,
        )


class ReleasePending(ApiError):
    """Computed and kept, but not stored yet: ask again, the same query gets these values."""

    def __init__(self, release_id: str, *, retry_after: int) -> None:
        super().__init__(
            "the release was computed but could not be stored yet; its values "
            "are kept: send the same query again to receive them (no second "
            "debit)",
            release_id=release_id,
        )
        self.headers = {"Retry-After": str(retry_after)}


BAD_REQUEST = ProblemType(400, "bad-request", "Bad request")
NOT_FOUND = ProblemType(404, "not-found", "Not found")
INVALID_REQUEST = ProblemType(422, "invalid-request", "Invalid request")
RELEASE_FAILED = ProblemType(500, "release-failed", "Release failed")
INTERNAL_ERROR = ProblemType(500, "internal-error", "Internal server error")
PAYLOAD_TOO_LARGE = ProblemType(413, "payload-too-large", "Payload too large")
REQUEST_TIMEOUT = ProblemType(408, "request-timeout", "Request Timeout")
"""The HTTP edge (api/server.py): a request's headers or body did not arrive in time."""
HEADERS_TOO_LARGE = ProblemType(
    431, "request-header-fields-too-large", "Request Header Fields Too Large"
)
"""The HTTP edge (api/server.py): too many or too large request header fields."""
TOO_MANY_CONNECTIONS = ProblemType(503, "too-many-connections", "Too many connections")
"""The HTTP edge (api/server.py): open connections or running requests at the limit."""

PROBLEM_TYPES: dict[type[Exception], ProblemType] = {
    # the HTTP layer's own errors
    ApiError: BAD_REQUEST,
    Unauthorized: ProblemType(401, "unauthorized", "Unauthorized"),
    Forbidden: ProblemType(403, "forbidden", "Forbidden"),
    BudgetExceeded: ProblemType(409, "budget-exceeded", "Privacy budget exceeded"),
    PayloadTooLarge: PAYLOAD_TOO_LARGE,
    InvalidRequest: INVALID_REQUEST,
    TooManyCells: ProblemType(422, "too-many-cells", "Too many cells"),
    CostBelowMinimum: ProblemType(422, "cost-below-minimum", "Cost below the minimum"),
    TooManyRequests: ProblemType(429, "too-many-requests", "Too many requests"),
    ReleaseFailed: RELEASE_FAILED,
    ReleaseBusy: ProblemType(503, "release-in-progress", "Release in progress"),
    ReleasePending: ProblemType(503, "release-pending", "Release pending"),
    DatasetUnavailable: ProblemType(503, "dataset-unavailable", "Dataset unavailable"),
    DatasetRetired: ProblemType(410, "dataset-retired", "Dataset retired"),
    StorageUnavailable: ProblemType(503, "storage-unavailable", "Storage unavailable"),
    EngineUnavailable: ProblemType(503, "engine-unavailable", "Engine unavailable"),
    # the database layer (db.errors)
    DbError: BAD_REQUEST,
    NotFound: NOT_FOUND,
    AlreadyExists: ProblemType(409, "conflict", "Already exists"),
    InvalidChange: ProblemType(409, "conflict", "Conflicting change"),
    InvalidInput: INVALID_REQUEST,
    CheckpointMismatch: ProblemType(409, "checkpoint-mismatch", "Not this ledger's checkpoint"),
    # the privacy layer (privacy.errors)
    PrivacyError: ProblemType(422, "invalid-query", "Invalid query"),
    PrivacyReleaseFailed: RELEASE_FAILED,
}
"""Every error the service raises on purpose, by class (the closest class in the MRO wins)."""

HTTP_PROBLEMS: dict[int, ProblemType] = {
    problem.status: problem
    for problem in (
        BAD_REQUEST,
        ProblemType(401, "unauthorized", "Unauthorized"),
        ProblemType(403, "forbidden", "Forbidden"),
        NOT_FOUND,
        ProblemType(405, "method-not-allowed", "Method not allowed"),
        ProblemType(406, "not-acceptable", "Not acceptable"),
        PAYLOAD_TOO_LARGE,
        ProblemType(415, "unsupported-media-type", "Unsupported media type"),
    )
}
"""Starlette's own HTTP errors (routing, methods, media types), by status."""


def problem_type(exc: BaseException) -> ProblemType:
    """The problem type of ``exc``: that of its closest class in :data:`PROBLEM_TYPES`."""
    for cls in type(exc).__mro__:
        found = PROBLEM_TYPES.get(cls)
        if found is not None:
            return found
    return INTERNAL_ERROR


def problem_document(problem: ProblemType, detail: str) -> bytes:
    """The JSON bytes of a problem with no extra members (for responses written below the
    app: the body-size middleware and the HTTP edge)."""
    return json.dumps(
        {"type": problem.type, "title": problem.title, "status": problem.status, "detail": detail}
    ).encode()


def problem_response(
    status: int,
    type_: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem+json response."""
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _problem(
    problem: ProblemType, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return problem_response(problem.status, problem.type, problem.title, detail, headers, **extra)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for error in exc.errors()[:20]:
        location = [str(part) for part in error.get("loc", ())]
        # Echo the location and message only, never the input value.
        errors.append({"loc": location, "msg": str(error.get("msg", ""))[:300]})
    return errors


_UNION_NOISE = frozenset({"missing", "extra_forbidden"})
"""What pydantic reports for every branch of a union that the body was not meant for."""


def _telling(exc: RequestValidationError, errors: list[dict[str, Any]]) -> dict[str, Any]:
    """The error the ``detail`` names: the first that is not a field missing or extra in
    some other branch of a union (``{"rho": 0.0101100000001}`` fails as ``EpsilonLoss``
    for lacking ``epsilon`` too, but what is wrong is its decimals), else the first."""
    if not errors:
        return {"loc": [], "msg": "invalid request"}
    for error, shown in zip(exc.errors()[:20], errors, strict=False):
        if error.get("type") not in _UNION_NOISE:
            return shown
    return errors[0]


def install(app: FastAPI) -> None:
    """Register the exception handlers that turn every error into problem+json."""

    async def _domain_error(_: Request, exc: Exception) -> JSONResponse:
        problem = problem_type(exc)
        if isinstance(exc, ApiError):
            detail, headers, extra = exc.detail, exc.headers, exc.extra
        else:  # db.errors and privacy.errors: a public detail only
            detail, headers, extra = str(getattr(exc, "detail", problem.title)), None, {}
        if problem.status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        return _problem(problem, detail, headers, **extra)

    for cls in PROBLEM_TYPES:  # one handler: the table says what each error is
        app.add_exception_handler(cls, _domain_error)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        first = _telling(exc, errors)
        detail = f"{'.'.join(first['loc'])}: {first['msg']}"
        return _problem(INVALID_REQUEST, detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.__cause__ is not None:
            # FastAPI's "error parsing the body" (invalid UTF-8, JSON nested too deeply,
            # ...): an invalid request body like any JSON syntax error, so the same
            # documented 422 problem, never a bare 400.
            return _problem(INVALID_REQUEST, "the request body is not valid UTF-8 JSON")
        problem = HTTP_PROBLEMS.get(
            exc.status_code, ProblemType(exc.status_code, "http-error", "HTTP error")
        )
        detail = exc.detail if isinstance(exc.detail, str) else problem.title
        return _problem(problem, detail, headers=dict(exc.headers) if exc.headers else None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error(
            "unhandled error",
            exc_info=exc,
            extra={"request_id": getattr(request.state, "request_id", None)},
        )
        return _problem(INTERNAL_ERROR, "the server failed to handle this request")
