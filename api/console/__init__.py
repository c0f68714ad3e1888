"""The web console at ``/ui`` and the offline API docs at ``/docs`` and ``/redoc``.

The console is a client of the public API: its routes call ``/v1/...`` in-process with the
signed-in consumer's key (:mod:`api.console.api_client`), so it can do nothing the API
does not allow. Pages are server-rendered Jinja2 templates with htmx and Chart.js, every
asset is vendored under ``api/static`` and a strict Content-Security-Policy
(:mod:`api.console.headers`) forbids loading anything else.
"""

from __future__ import annotations

from fastapi import FastAPI

from api.console import admin, analyst, auditor, docs, signin
from api.console.guard import install_handlers
from api.console.headers import SecurityHeadersMiddleware
from api.console.templating import StaticAssets


def install(app: FastAPI) -> None:
    """Add the console, its static files, the docs pages and ``/`` → ``/ui`` to ``app``."""
    app.mount("/ui/static", StaticAssets(), name="console-static")
    for router in (signin.router, auditor.router, admin.router, analyst.router, docs.router):
        app.include_router(router, include_in_schema=False)
    install_handlers(app)
    app.add_middleware(SecurityHeadersMiddleware)
