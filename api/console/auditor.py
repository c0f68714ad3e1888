"""The auditor's page: verification, budget burn-down charts, the ledger timeline and the
checkpoint history, all read through the API with the auditor's key."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from api.console.api_client import ApiProblem, ConsoleApi, console_api
from api.console.guard import session_of
from api.console.templating import render
from api.console.views import DEBIT_KINDS, BurnDown, burn_down
from db.ledger import KINDS

router = APIRouter()
PAGE_SIZE = 50
FILTERS = ("consumer", "dataset", "kind", "since", "until")


@dataclass
class Timeline:
    """One page of the ledger timeline, newest first, and the API's cursor of the next
    older page."""

    filters: dict[str, str]
    entries: list[dict[str, Any]] = field(default_factory=list)
    older_cursor: str | None = None
    error: str | None = None

    def older_query(self) -> dict[str, str]:
        """The query string of the next older page."""
        return {**{k: v for k, v in self.filters.items() if v}, "cursor": self.older_cursor or ""}


def _filters(request: Request) -> dict[str, str]:
    return {name: request.query_params.get(name, "").strip() for name in FILTERS}


def _cursor(request: Request) -> str | None:
    return request.query_params.get("cursor") or None


async def timeline(api: ConsoleApi, filters: dict[str, str], cursor: str | None) -> Timeline:
    """The newest ``PAGE_SIZE`` entries matching ``filters`` (after ``cursor``, the API's
    newest-first cursor): one page of ``GET /v1/ledger?order=desc``, so a page reads only
    the entries it shows however long the ledger is."""
    page = Timeline(filters)
    params: dict[str, Any] = {**filters, "limit": PAGE_SIZE, "order": "desc", "cursor": cursor}
    try:
        answer = await api.get("/v1/ledger", params)
    except ApiProblem as problem:
        page.error = str(problem)
        return page
    page.entries = list(answer["items"])
    page.older_cursor = answer.get("next_cursor")
    return page


def _seq(entry: dict[str, Any]) -> int:
    return int(entry["seq"])


async def burn_downs(api: ConsoleApi) -> list[BurnDown]:
    """Each budget's debits over time: the ledger's debit entries read once, oldest first,
    and shared out by consumer and dataset (not one read per budget)."""
    budgets = await api.items("/v1/budgets")
    debits: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for kind in DEBIT_KINDS:
        for entry in await api.items("/v1/ledger", {"kind": kind, "limit": 1000}):
            debits[(str(entry.get("consumer")), str(entry.get("dataset")))].append(entry)
    return [
        burn_down(
            budget,
            sorted(debits[(str(budget["consumer"]), str(budget["dataset"]))], key=_seq),
        )
        for budget in budgets
    ]


@router.get("/ui/auditor", response_class=HTMLResponse)
async def auditor_page(request: Request) -> Response:
    """The auditor's console."""
    session = await session_of(request, "auditor")
    async with console_api(request, session.key) as api:
        verification = await api.get("/v1/ledger/verify")
        charts = await burn_downs(api)
        page = await timeline(api, _filters(request), _cursor(request))
        current = await api.text("/v1/ledger/checkpoint")  # serves it: then it is listed
        checkpoints = await api.items("/v1/ledger/checkpoints")  # newest first
    context = session.context(
        "Auditor",
        verification=verification,
        charts=charts,
        timeline=page,
        kinds=KINDS,
        checkpoints=checkpoints,
        checkpoint=current,
    )
    return render(request, "console/auditor.html", context)


@router.get("/ui/auditor/ledger", response_class=HTMLResponse)
async def ledger_results(request: Request) -> Response:
    """The ledger timeline's results alone (htmx swaps them into the page)."""
    session = await session_of(request, "auditor")
    async with console_api(request, session.key) as api:
        page = await timeline(api, _filters(request), _cursor(request))
    return render(request, "console/_ledger.html", session.context("Ledger", timeline=page))
