"""The admin's page: consumers and keys, datasets, budgets; every change is an API call
with the admin's key."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.console.api_client import ApiProblem, ConsoleApi, console_api
from api.console.guard import Session, session_of
from api.console.session import form_fields
from api.console.templating import render

router = APIRouter()
ROLES = ("analyst", "admin", "auditor")
MODELS = ("pure", "zcdp")
EVERY = ("day", "week", "month")


async def _page(
    request: Request,
    session: Session,
    api: ConsoleApi,
    *,
    status_code: int = 200,
    **outcome: Any,
) -> Response:
    context = session.context(
        "Admin",
        consumers=await api.items("/v1/consumers"),
        datasets=await api.items("/v1/datasets"),
        budgets=await api.items("/v1/budgets"),
        roles=ROLES,
        models=MODELS,
        every=EVERY,
        form=outcome.pop("form", {}),
        form_name=outcome.pop("form_name", None),
        **outcome,
    )
    return render(request, "console/admin.html", context, status_code=status_code)


@router.get("/ui/admin", response_class=HTMLResponse)
async def admin_page(request: Request) -> Response:
    """The admin's console."""
    session = await session_of(request, "admin")
    async with console_api(request, session.key) as api:
        return await _page(request, session, api)


async def _act(request: Request, action: str, call: Any) -> Response:
    """Run ``call(api, fields)``; the page with its outcome (a notice, or the problem and
    the refused form with the values submitted, so they can be corrected)."""
    session = await session_of(request, "admin")
    fields = await form_fields(request)
    async with console_api(request, session.key) as api:
        try:
            outcome = await call(api, fields)
        except ApiProblem as problem:
            return await _page(
                request,
                session,
                api,
                status_code=problem.status,
                error=f"{action}: {problem}",
                form=fields,
                form_name=action,
            )
        return await _page(request, session, api, **outcome)


async def _create_consumer(api: ConsoleApi, fields: dict[str, str]) -> dict[str, Any]:
    body = {"name": fields.get("name", "").strip(), "role": fields.get("role", "")}
    created = await api.post("/v1/consumers", body)
    return {
        "notice": f"Consumer {created['name']} ({created['role']}) created.",
        "new_key": {"consumer": created["name"], "api_key": created["api_key"]},
    }


async def _issue_key(api: ConsoleApi, fields: dict[str, str]) -> dict[str, Any]:
    name = fields.get("consumer", "").strip()
    issued = await api.post(f"/v1/consumers/{quote(name, safe='')}/keys")
    return {
        "notice": f"Key {issued['id']} issued to {name}.",
        "new_key": {"consumer": name, "api_key": issued["api_key"]},
    }


async def _register_dataset(api: ConsoleApi, fields: dict[str, str]) -> dict[str, Any]:
    try:
        metadata = json.loads(fields.get("metadata", ""))
    except ValueError as error:
        raise ApiProblem(422, "Invalid JSON", str(error)) from None
    registered = await api.post("/v1/datasets", metadata)
    return {"notice": f"Dataset {registered['name']} registered."}


def budget_body(fields: dict[str, str]) -> dict[str, Any]:
    """The ``PUT /v1/budgets/{consumer}/{dataset}`` body of the budget form (amounts are
    sent as typed: the API parses them exactly)."""
    model = fields.get("model", "pure")
    unit = "rho" if model == "zcdp" else "epsilon"
    body: dict[str, Any] = {"model": model, unit: fields.get(unit, "").strip()}
    every = fields.get("period", "").strip()
    if every:
        body["period"] = {"column": fields.get("period_column", "").strip(), "every": every}
    return body


async def _set_budget(api: ConsoleApi, fields: dict[str, str]) -> dict[str, Any]:
    consumer = quote(fields.get("consumer", "").strip(), safe="")
    dataset = quote(fields.get("dataset", "").strip(), safe="")
    if not consumer or not dataset:
        raise ApiProblem(422, "Invalid request", "choose a consumer and a dataset")
    budget = await api.put(f"/v1/budgets/{consumer}/{dataset}", budget_body(fields))
    return {
        "notice": f"Budget of {budget['consumer']} on {budget['dataset']} set to "
        f"{budget['unit']} = {budget['total']:g} ({budget['remaining']:g} remaining)."
    }


@router.get("/ui/admin/consumers")
@router.get("/ui/admin/keys")
@router.get("/ui/admin/datasets")
@router.get("/ui/admin/budgets")
async def back_to_admin() -> Response:
    """A form's address (shown after a plain form post; reloaded, or bookmarked) is the
    admin's page."""
    return RedirectResponse("/ui/admin", status_code=303)


@router.post("/ui/admin/consumers", response_class=HTMLResponse)
async def create_consumer(request: Request) -> Response:
    """Create a consumer; its key is shown once."""
    return await _act(request, "Create consumer", _create_consumer)


@router.post("/ui/admin/keys", response_class=HTMLResponse)
async def issue_key(request: Request) -> Response:
    """Issue another key to a consumer; shown once."""
    return await _act(request, "Issue key", _issue_key)


@router.post("/ui/admin/datasets", response_class=HTMLResponse)
async def register_dataset(request: Request) -> Response:
    """Register a dataset from its metadata (JSON, as ``POST /v1/datasets`` takes it)."""
    return await _act(request, "Register dataset", _register_dataset)


@router.post("/ui/admin/budgets", response_class=HTMLResponse)
async def set_budget(request: Request) -> Response:
    """Create or change a budget."""
    return await _act(request, "Set budget", _set_budget)
