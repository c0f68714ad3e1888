"""The auditor's page: verification, budget burn-down charts, the ledger timeline and the
checkpoint history, all read through the API with the auditor's key."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from api.console.api_client import ApiProblem, ConsoleApi, console_api
from api.console.guard import session_of
from api.console.templating import render
from api.console.views import BurnDown, burn_down
from db.ledger import KINDS

router = APIRouter()
PAGE_SIZE = 50
FILTERS = ("consumer", "dataset", "kind", "since", "until")


@dataclass
class Timeline:
    """One page of the ledger timeline, newest first, and where the next older page
    starts (the seq to read before)."""

    filters: dict[str, str]
    entries: list[dict[str, Any]] = field(default_factory=list)
    older_before: int | None = None
    error: str | None = None

    def older_query(self) -> dict[str, str]:
        """The query string of the next older page."""
        return {**{k: v for k, v in self.filters.items() if v}, "before": str(self.older_before)}


def _filters(request: Request) -> dict[str, str]:
    return {name: request.query_params.get(name, "").strip() for name in FILTERS}


def _before(request: Request) -> int | None:
    raw = request.query_params.get("before", "")
    return int(raw) if raw.isdigit() else None


async def timeline(api: ConsoleApi, filters: dict[str, str], before: int | None) -> Timeline:
    """The newest ``PAGE_SIZE`` entries matching ``filters`` with seq below ``before``.

    The API lists oldest first; this reads its pages forwards and keeps the last window,
    so a page costs one pass over the matching entries (bounded memory)."""
    page = Timeline(filters)
    window: deque[dict[str, Any]] = deque(maxlen=PAGE_SIZE + 1)
    params: dict[str, Any] = {**filters, "limit": 1000}
    try:
        cursor: str | None = None
        while True:
            answer = await api.get("/v1/ledger", {**params, "cursor": cursor})
            for entry in answer["items"]:
                if before is None or int(entry["seq"]) < before:
                    window.append(entry)
            cursor = answer.get("next_cursor")
            if not cursor or (
                before is not None and answer["items"] and int(answer["items"][-1]["seq"]) >= before
            ):
                break
    except ApiProblem as problem:
        page.error = str(problem)
        return page
    entries = list(window)
    if len(entries) > PAGE_SIZE:
        entries = entries[1:]
        page.older_before = int(entries[0]["seq"])
    page.entries = entries[::-1]
    return page


async def burn_downs(api: ConsoleApi) -> list[BurnDown]:
    """Each budget's debits over time (one ledger read per consumer and dataset)."""
    charts = []
    for budget in await api.items("/v1/budgets"):
        entries = await api.items(
            "/v1/ledger",
            {
                "consumer": budget["consumer"],
                "dataset": budget["dataset"],
                "kind": "release",
                "limit": 1000,
            },
        )
        charts.append(burn_down(budget, entries))
    return charts


@router.get("/ui/auditor", response_class=HTMLResponse)
async def auditor_page(request: Request) -> Response:
    """The auditor's console."""
    session = await session_of(request, "auditor")
    async with console_api(request, session.key) as api:
        verification = await api.get("/v1/ledger/verify")
        charts = await burn_downs(api)
        page = await timeline(api, _filters(request), _before(request))
        checkpoints = await api.items("/v1/ledger/checkpoints")
        current = await api.text("/v1/ledger/checkpoint")
    context = session.context(
        "Auditor",
        verification=verification,
        charts=charts,
        timeline=page,
        kinds=KINDS,
        checkpoints=checkpoints[::-1],
        checkpoint=current,
    )
    return render(request, "console/auditor.html", context)


@router.get("/ui/auditor/ledger", response_class=HTMLResponse)
async def ledger_results(request: Request) -> Response:
    """The ledger timeline's results alone (htmx swaps them into the page)."""
    session = await session_of(request, "auditor")
    async with console_api(request, session.key) as api:
        page = await timeline(api, _filters(request), _before(request))
    return render(request, "console/_ledger.html", session.context("Ledger", timeline=page))
