"""The analyst's page (budgets, preview and query, releases) and one release's page."""

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
from api.console.views import parse_group_by, release_view

router = APIRouter()
STATISTICS = ("count", "unit_count", "sum", "mean", "quantile")


def parse_where(text: str) -> list[Any] | None:
    """The form's "Where (JSON)": the API's ``where``, a JSON list of conditions (None when
    empty); :class:`ApiProblem` (raised before any request, so nothing is spent) when it is
    not JSON or not a list."""
    if not text.strip():
        return None
    try:
        where = json.loads(text)
    except ValueError as error:
        raise ApiProblem(422, "Invalid JSON", f"Where (JSON): {error}") from None
    if not isinstance(where, list):
        raise ApiProblem(422, "Invalid JSON", "Where (JSON): a JSON list of conditions")
    return where


def query_body(fields: dict[str, str]) -> dict[str, Any]:
    """The ``/v1/queries`` body of the query form: the cost in ρ when one is given (a zCDP
    budget), else in ε, as typed (the API parses it exactly); raises :class:`ApiProblem`
    for a "Where (JSON)" that is not a JSON list."""
    rho = fields.get("rho", "").strip()
    privacy = {"rho": rho} if rho else {"epsilon": fields.get("epsilon", "").strip()}
    body: dict[str, Any] = {
        "dataset": fields.get("dataset", "").strip(),
        "statistic": fields.get("statistic", "").strip(),
        "privacy": privacy,
    }
    if fields.get("column", "").strip():
        body["column"] = fields["column"].strip()
    q = fields.get("q", "").strip()
    if q:
        try:
            body["q"] = float(q)
        except ValueError:
            body["q"] = q  # the API explains what it takes
    group_by = parse_group_by(fields.get("group_by", ""))
    if group_by:
        body["group_by"] = group_by
    where = parse_where(fields.get("where", ""))
    if where is not None:
        body["where"] = where
    return body


async def _page(
    request: Request,
    session: Session,
    api: ConsoleApi,
    *,
    status_code: int = 200,
    **outcome: Any,
) -> Response:
    datasets = await api.items("/v1/datasets")
    context = session.context(
        "Analyst",
        budgets=await api.items("/v1/budgets"),
        datasets=datasets,
        columns=sorted({c for d in datasets for c in d.get("columns", {})}),
        releases=(await api.get("/v1/queries", {"limit": 100}))["items"],
        statistics=STATISTICS,
        form=outcome.pop("form", {}),
        **outcome,
    )
    return render(request, "console/analyst.html", context, status_code=status_code)


@router.get("/ui/analyst", response_class=HTMLResponse)
async def analyst_page(request: Request) -> Response:
    """The analyst's console."""
    session = await session_of(request, "analyst")
    async with console_api(request, session.key) as api:
        return await _page(request, session, api)


@router.get("/ui/analyst/preview")
@router.get("/ui/analyst/query")
async def back_to_analyst() -> Response:
    """A form's address (shown after a plain form post; reloaded, or bookmarked) is the
    analyst's page."""
    return RedirectResponse("/ui/analyst", status_code=303)


@router.post("/ui/analyst/preview", response_class=HTMLResponse)
async def preview(request: Request) -> Response:
    """What the form's query would cost and how accurate it would be (spends nothing).
    htmx gets the result alone; a plain form post gets the whole page."""
    session = await session_of(request, "analyst")
    fields = await form_fields(request)
    partial = request.headers.get("hx-request") == "true"
    async with console_api(request, session.key) as api:
        outcome: dict[str, Any]
        status_code = 200
        try:
            outcome = {"preview": await api.post("/v1/queries/preview", query_body(fields))}
        except ApiProblem as problem:
            outcome = {"error": f"Preview: {problem}"}
            status_code = problem.status
        if partial:  # htmx swaps only 2xx answers: the problem is shown in the region
            context = session.context("Preview", **outcome)
            return render(request, "console/_preview.html", context)
        return await _page(request, session, api, status_code=status_code, form=fields, **outcome)


@router.post("/ui/analyst/query", response_class=HTMLResponse)
async def run_query(request: Request) -> Response:
    """Run the form's query (its cost is debited) and go to the release."""
    session = await session_of(request, "analyst")
    fields = await form_fields(request)
    async with console_api(request, session.key) as api:
        try:
            release = await api.post("/v1/queries", query_body(fields))
        except ApiProblem as problem:
            return await _page(
                request,
                session,
                api,
                status_code=problem.status,
                form=fields,
                error=f"Run query: {problem}",
            )
    return RedirectResponse(f"/ui/analyst/releases/{quote(release['id'], safe='')}", 303)


@router.get("/ui/analyst/releases/{release_id}", response_class=HTMLResponse)
async def release_page(release_id: str, request: Request) -> Response:
    """One release: its values with their error bars, accuracy and cost."""
    session = await session_of(request, "analyst")
    async with console_api(request, session.key) as api:
        try:
            release = await api.get(f"/v1/queries/{quote(release_id, safe='')}")
        except ApiProblem as problem:
            context = session.context(f"Release {release_id}", error=str(problem), release=None)
            return render(request, "console/release.html", context, status_code=problem.status)
    context = session.context(f"Release {release_id}", release=release, view=release_view(release))
    return render(request, "console/release.html", context)
