"""The console's Jinja2 templates and static files (shipped as package data)."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from api.console.views import (
    accuracy_split_text,
    auto_bounds,
    bounds_text,
    cost_text,
    truncation_text,
    when,
)

API_DIR = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = API_DIR / "templates"
STATIC_DIR = API_DIR / "static"
CACHE_CONTROL = "public, max-age=31536000, immutable"
"""Static files never change under one version (an upgrade changes the version)."""

STATIC_URL = "/ui/static/"


@lru_cache(maxsize=256)
def static_url(path: str) -> str:
    """The URL of static file ``path`` with a digest of its content in the query, so a
    changed file gets a new URL despite the long cache lifetime."""
    digest = hashlib.sha256((STATIC_DIR / path).read_bytes()).hexdigest()[:12]
    return f"{STATIC_URL}{path}?v={digest}"


templates = Jinja2Templates(directory=TEMPLATES_DIR)
templates.env.globals["static"] = static_url
templates.env.globals["cost_text"] = cost_text
templates.env.globals["bounds_text"] = bounds_text
templates.env.globals["truncation_text"] = truncation_text
templates.env.globals["accuracy_split_text"] = accuracy_split_text
templates.env.globals["auto_bounds"] = auto_bounds
templates.env.filters["when"] = when


def render(
    request: Request, name: str, context: dict[str, Any], *, status_code: int = 200
) -> HTMLResponse:
    """Render template ``name`` with ``context`` (plus the request) as an HTML response."""
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers["cache-control"] = "no-store"
    return response


class StaticAssets(StaticFiles):
    """The console's static files (own script and stylesheet, vendored packages), with
    long cache headers."""

    def __init__(self) -> None:
        super().__init__(directory=STATIC_DIR)

    async def get_response(self, path: str, scope: Scope) -> Any:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["cache-control"] = CACHE_CONTROL
        return response
