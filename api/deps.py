"""Typed dependencies at the HTTP edge: the database, settings and the caller."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.problems import Forbidden, Unauthorized
from api.settings import Settings
from db import accounts
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


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
RequestIdDep = Annotated[str, Depends(get_request_id)]


def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    database: DbDep,
) -> Principal:
    """The consumer whose unrevoked key is in ``Authorization: Bearer``; else 401."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("an API key is required: Authorization: Bearer <key>")
    secret = credentials.credentials
    if not secret or len(secret) > MAX_KEY_LENGTH:
        raise Unauthorized("the API key is not valid")
    principal = accounts.authenticate(database, secret)
    if principal is None:
        raise Unauthorized("the API key is not valid")
    request.state.principal = principal
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
Analyst = Annotated[Principal, Depends(require("analyst"))]
AnyRole = CurrentPrincipal
