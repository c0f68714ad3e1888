"""The OpenAPI document: problem responses, roles and the request-id header.

Routes declare their error responses with :func:`problems`;
:func:`complete_document` then finishes what FastAPI generates:

- problem responses are served as ``application/problem+json`` (FastAPI would
  list them as ``application/json``);
- every authenticated operation states the roles allowed to call it, as
  ``x-roles`` and in its description, taken from its dependencies (so the
  document cannot drift from what is enforced);
- every response documents the ``X-Request-ID`` header.

The committed copy lives in ``openapi/openapi.json`` (``ruis openapi``).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from typing import Any, get_args

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from api.deps import get_principal, require
from api.problems import PROBLEM_MEDIA_TYPE, Problem
from api.schemas import Role

ALL_ROLES: tuple[str, ...] = get_args(Role)
_PROBLEM_REF = "#/components/schemas/Problem"
_REQUIRE_CODE = require(*ALL_ROLES).__code__  # every ``require(...)`` check shares this code
_MENTIONS_ROLES = re.compile(r"\bRoles?:")

PROBLEM_NOTES: dict[int, str] = {
    401: "Missing, malformed, unknown or revoked API key (`unauthorized`).",
    403: "The caller's role may not do this (`forbidden`).",
    404: "No such consumer, key, dataset or release (`not-found`). An analyst gets 404 "
    "for a dataset it holds no budget on, the same as for one that does not exist.",
    409: "Conflicts with what is stored (`conflict`).",
    410: "The dataset is retired: no new release or preview; nothing was spent "
    "(`dataset-retired`).",
    413: "The request body is larger than the service accepts (`payload-too-large`).",
    422: "The request is malformed or cannot be served as asked (`invalid-request`, "
    "`invalid-query`); `errors` lists the offending fields.",
    429: "A rate or concurrency limit was reached; nothing was spent; retry after the "
    "`Retry-After` seconds (`too-many-requests`).",
    500: "The server failed (`internal-error`).",
    503: "Temporarily unavailable; ask again shortly.",
}


def problems(
    *statuses: int, notes: Mapping[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for FastAPI: a problem document for each of ``statuses``.

    ``notes`` replaces the generic description of a status where a route has a
    more precise one (e.g. what a 409 means there).
    """
    notes = notes or {}
    return {
        status: {"model": Problem, "description": notes.get(status, PROBLEM_NOTES[status])}
        for status in statuses
    }


def _required_roles(dependant: Dependant) -> tuple[str, ...] | None:
    """The roles a dependency tree lets through: None without authentication."""
    authenticated = False
    for dependency in dependant.dependencies:
        call = dependency.call
        if call is not None and getattr(call, "__code__", None) is _REQUIRE_CODE:
            roles: tuple[str, ...] = inspect.getclosurevars(call).nonlocals["roles"]
            return roles
        if call is get_principal:
            authenticated = True
        nested = _required_roles(dependency)
        if nested is not None and nested != ALL_ROLES:
            return nested
        authenticated = authenticated or nested is not None
    return ALL_ROLES if authenticated else None


def operation_roles(routes: Sequence[BaseRoute]) -> dict[tuple[str, str], tuple[str, ...]]:
    """``(path, method)`` → the roles allowed, for every authenticated API route."""
    found: dict[tuple[str, str], tuple[str, ...]] = {}
    for route in routes:
        if not isinstance(route, APIRoute):
            continue
        roles = _required_roles(route.dependant)
        if roles is None:
            continue
        for method in route.methods or ():
            found[(route.path, method.lower())] = roles
    return found


def _problem_content(response: dict[str, Any]) -> None:
    content: dict[str, Any] = response.get("content", {})
    json_body = content.get("application/json")
    if json_body is None or json_body.get("schema", {}).get("$ref") != _PROBLEM_REF:
        return
    del content["application/json"]
    content.setdefault(PROBLEM_MEDIA_TYPE, {})["schema"] = {"$ref": _PROBLEM_REF}


def complete_document(schema: dict[str, Any], routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """Finish FastAPI's document in place (see the module docstring); returns it."""
    roles = operation_roles(routes)
    components = schema.setdefault("components", {})
    components.setdefault("headers", {})["X-Request-ID"] = {
        "description": "The id of this request (the client's own `X-Request-ID` when it sent "
        "a sane one); also recorded on the ledger entries the request caused.",
        "schema": {"type": "string"},
    }
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            for status, response in operation.get("responses", {}).items():
                if status[:1] in "45":
                    _problem_content(response)
                response.setdefault("headers", {})["X-Request-ID"] = {
                    "$ref": "#/components/headers/X-Request-ID"
                }
            allowed = roles.get((path, method))
            if allowed is None:
                continue
            operation["x-roles"] = list(allowed)
            description = operation.get("description", "")
            if not _MENTIONS_ROLES.search(description):
                label = "Role" if len(allowed) == 1 else "Roles"
                operation["description"] = (
                    f"{description}\n\n{label}: {', '.join(allowed)}.".lstrip()
                )
    return schema
