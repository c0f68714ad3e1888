"""Typed dependencies at the HTTP edge: the database, settings and the caller."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from api.ledger_key import LogSigner, load_or_create
from api.problems import Forbidden, Unauthorized
from api.settings import Settings
from db import accounts, ledger
from db.accounts import Principal
from db.engine import Database

_bearer = HTTPBearer(auto_error=False, description="An API key issued by an admin")
MAX_KEY_LENGTH = 128


def get_db(request: Request) -> Database:
    """The service's database."""
    database: Database = request.app.state.db
    return database


def get_settings(request: Request) -> Settings:
    """The service's settings."""
    settings: Settings = request.app.state.settings
    return settings


def get_request_id(request: Request) -> str:
    """The id of this request (also sent back as ``X-Request-ID`` and put on ledger entries)."""
    return str(getattr(request.state, "request_id", ""))


def get_log(request: Request) -> LogSigner:
    """The ledger's signer (its key loaded, or made, at first use)."""
    log: LogSigner | None = getattr(request.app.state, "log_signer", None)
    if log is None:
        settings: Settings = request.app.state.settings
        log = LogSigner(load_or_create(settings.ledger_key_path, settings.ledger_origin))
        request.app.state.log_signer = log
    return log


DbDep = Annotated[Database, Depends(get_db)]
LogDep = Annotated[LogSigner, Depends(get_log)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
RequestIdDep = Annotated[str, Depends(get_request_id)]


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    database: DbDep,
) -> Principal:
    """The consumer whose unrevoked key is in ``Authorization: Bearer``; else 401.

    Every ledger entry this request then appends carries the key's id: the key is set
    in the request's context here, in the request's own task (an ``async`` dependency),
    so the route and the worker threads it starts inherit it."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("an API key is required: Authorization: Bearer <key>")
    secret = credentials.credentials
    if not secret or len(secret) > MAX_KEY_LENGTH:
        raise Unauthorized("the API key is not valid")
    principal = await run_in_threadpool(accounts.authenticate, database, secret)
    if principal is None:
        raise Unauthorized("the API key is not valid")
    request.state.principal = principal
    ledger.ACTING_KEY.set(principal.key_id)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require(*roles: str) -> Callable[[Principal], Principal]:
    """A dependency that lets only ``roles`` through (403 for any other role)."""

    def _check(principal: CurrentPrincipal) -> Principal:
        if principal.role not in roles:
            raise Forbidden(
                f"the {principal.role} role may not do this; allowed: {', '.join(roles)}"
            )
        return principal

    return _check


Admin = Annotated[Principal, Depends(require("admin"))]
AdminOrAuditor = Annotated[Principal, Depends(require("admin", "auditor"))]
Auditor = Annotated[Principal, Depends(require("auditor"))]
Analyst = Annotated[Principal, Depends(require("analyst"))]
AnyRole = CurrentPrincipal
