"""The console's client of the public API: ``/v1/...`` called in-process through the app
itself, with the signed-in consumer's key, so every page shows only what the API lets that
consumer see and every change goes through the API's own checks and use-cases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import Request

from api.deps import get_request_id

TIMEOUT_SECONDS = 120.0


class ApiProblem(Exception):
    """A problem+json (or other non-2xx) answer of the API."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(status, title, detail)
        self.status = status
        self.title = title
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.title}: {self.detail}" if self.detail else self.title


def _problem(response: httpx.Response) -> ApiProblem:
    try:
        document = response.json()
    except ValueError:
        document = {}
    if not isinstance(document, dict):
        document = {}
    return ApiProblem(
        status=response.status_code,
        title=str(document.get("title") or response.reason_phrase or "Error"),
        detail=str(document.get("detail") or ""),
    )


class ConsoleApi:
    """Calls of the public API on behalf of one signed-in consumer."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self._client.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _problem(response)
        return response

    async def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET ``path``: its JSON; :class:`ApiProblem` for an error."""
        clean = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        return (await self._send("GET", path, params=clean)).json()

    async def text(self, path: str) -> str:
        """GET ``path`` as text."""
        return (await self._send("GET", path)).text

    async def post(self, path: str, body: Any = None) -> Any:
        """POST ``body`` as JSON to ``path``: the answer's JSON."""
        return (await self._send("POST", path, json=body)).json()

    async def put(self, path: str, body: Any) -> Any:
        """PUT ``body`` as JSON to ``path``: the answer's JSON."""
        return (await self._send("PUT", path, json=body)).json()

    async def items(self, path: str, params: dict[str, Any] | None = None) -> list[Any]:
        """Every item of a paginated list (following ``next_cursor``)."""
        found: list[Any] = []
        cursor: str | None = None
        while True:
            page = await self.get(path, {**(params or {}), "cursor": cursor})
            found.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return found


@asynccontextmanager
async def console_api(request: Request, key: str) -> AsyncIterator[ConsoleApi]:
    """A :class:`ConsoleApi` calling this very app with ``key`` (and this request's id)."""
    transport = httpx.ASGITransport(app=request.app)
    headers = {"Authorization": f"Bearer {key}", "X-Request-ID": get_request_id(request)}
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://console.internal",
        headers=headers,
        timeout=TIMEOUT_SECONDS,
    ) as client:
        yield ConsoleApi(client)
