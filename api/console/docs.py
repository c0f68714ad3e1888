"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) on vendored assets, and ``/`` → ``/ui``.

FastAPI's own docs pages load their scripts from a CDN and start with an inline script;
these load everything from ``/ui/static`` and start from an external script."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.console.templating import render

router = APIRouter()


@router.get("/", include_in_schema=False)
async def root() -> Response:
    """The console."""
    return RedirectResponse("/ui", status_code=307)


@router.get("/docs", response_class=HTMLResponse)
async def swagger_ui(request: Request) -> Response:
    """The OpenAPI document in Swagger UI."""
    return render(request, "docs/swagger.html", {"title": "Ruis API — Swagger UI"})


@router.get("/redoc", response_class=HTMLResponse)
async def redoc(request: Request) -> Response:
    """The OpenAPI document in ReDoc."""
    return render(request, "docs/redoc.html", {"title": "Ruis API — ReDoc"})
