"""RFC 9457 problem details: one error hierarchy, one mapping to HTTP.

Every error response of the service is ``application/problem+json`` with
``type``, ``title``, ``status`` and ``detail``. Details are written by us from
public information (names, declared metadata, amounts); no handler echoes a
data value, and unexpected exceptions become a generic 500 without internals.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from db.errors import AlreadyExists, DbError, InvalidChange, InvalidInput, NotFound
from privacy.errors import PrivacyError

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("ruis.api")


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None
    remaining: dict[str, Any] | None = None
    release_id: str | None = None


class ApiError(Exception):
    """An error with a status, a problem type and a public detail."""

    status = 400
    type = "bad-request"
    title = "Bad request"
    headers: dict[str, str] | None = None
    """Extra response headers (e.g. ``Retry-After``)."""

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class Unauthorized(ApiError):
    """Missing, malformed, unknown or revoked API key."""

    status, type, title = 401, "unauthorized", "Unauthorized"


class Forbidden(ApiError):
    """Valid key, but the role may not do this."""

    status, type, title = 403, "forbidden", "Forbidden"


class BudgetExceeded(ApiError):
    """The query's cost does not fit in the remaining budget or dataset cap."""

    status, type, title = 409, "budget-exceeded", "Privacy budget exceeded"


class InvalidRequest(ApiError):
    """A well-formed request that cannot be served as asked."""

    status, type, title = 422, "invalid-request", "Invalid request"


class PayloadTooLarge(ApiError):
    """The request body is larger than the service accepts."""

    status, type, title = 413, "payload-too-large", "Payload too large"


_DB_ERRORS: dict[type[DbError], tuple[int, str, str]] = {
    NotFound: (404, "not-found", "Not found"),
    AlreadyExists: (409, "conflict", "Already exists"),
    InvalidChange: (409, "conflict", "Conflicting change"),
    InvalidInput: (422, "invalid-request", "Invalid request"),
}

_HTTP_TYPES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
}


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


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for error in exc.errors()[:20]:
        location = [str(part) for part in error.get("loc", ())]
        # Echo the location and message only, never the input value.
        errors.append({"loc": location, "msg": str(error.get("msg", ""))[:300]})
    return errors


def install(app: FastAPI) -> None:
    """Register the exception handlers that turn every error into problem+json."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else exc.headers
        return problem_response(exc.status, exc.type, exc.title, exc.detail, headers, **exc.extra)

    @app.exception_handler(DbError)
    async def _db_error(_: Request, exc: DbError) -> JSONResponse:
        for cls in type(exc).__mro__:
            if cls in _DB_ERRORS:
                status, type_, title = _DB_ERRORS[cls]
                return problem_response(status, type_, title, exc.detail)
        return problem_response(400, "bad-request", "Bad request", exc.detail)

    @app.exception_handler(PrivacyError)
    async def _privacy_error(_: Request, exc: PrivacyError) -> JSONResponse:
        return problem_response(422, "invalid-query", "Invalid query", exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        detail = f"{'.'.join(first['loc'])}: {first['msg']}"
        return problem_response(422, "invalid-request", "Invalid request", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.__cause__ is not None:
            # FastAPI's "error parsing the body" (invalid UTF-8, JSON nested too deeply,
            # ...): an invalid request body like any JSON syntax error, so the same
            # documented 422 problem, never a bare 400.
            return problem_response(
                422,
                "invalid-request",
                "Invalid request",
                "the request body is not valid UTF-8 JSON",
            )
        type_, title = _HTTP_TYPES.get(exc.status_code, ("http-error", "HTTP error"))
        detail = exc.detail if isinstance(exc.detail, str) else title
        return problem_response(
            exc.status_code,
            type_,
            title,
            detail,
            headers=dict(exc.headers) if exc.headers else None,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error(
            "unhandled error",
            exc_info=exc,
            extra={"request_id": getattr(request.state, "request_id", None)},
        )
        return problem_response(
            500,
            "internal-error",
            "Internal server error",
            "the server failed to handle this request",
        )
