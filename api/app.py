"""The FastAPI application: routes, error handling, middleware and start-up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import problems
from api.middleware import BodySizeLimitMiddleware, RequestIdMiddleware
from api.routes import budgets, consumers, datasets, health, ledger, queries
from api.settings import Settings
from db import accounts
from db.engine import Database
from db.migrate import upgrade

DESCRIPTION = """\
Ruis answers only differentially private aggregate queries over sensitive
microdata, computed with OpenDP and charged against a per-consumer privacy
budget kept in a tamper-evident, hash-chained ledger.

Every endpoint but `/healthz`, `/readyz`, `/docs` and `/openapi.json` needs
`Authorization: Bearer <api key>`. Roles: **analyst** (its own budgets,
queries and releases), **admin** (consumers, keys, datasets, budgets, ledger),
**auditor** (read-only: budgets and the whole ledger). Errors are
`application/problem+json` (RFC 9457).
"""


def prepare(settings: Settings) -> Database:
    """Open the database, migrate it to the newest schema and create the bootstrap admin."""
    database = Database(settings.database_url)
    upgrade(database)
    if settings.bootstrap_admin_key:
        accounts.ensure_bootstrap_admin(database, settings.bootstrap_admin_key)
    return database


def create_app(settings: Settings | None = None) -> FastAPI:
    """A configured application (settings from the environment when not given)."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if getattr(app.state, "db", None) is None:
            app.state.db = prepare(settings)
        yield
        app.state.db.dispose()

    app = FastAPI(title="Ruis", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.db = None
    problems.install(app)
    app.include_router(health.router)
    app.include_router(consumers.router)
    app.include_router(datasets.router)
    app.include_router(budgets.router)
    app.include_router(ledger.router)
    app.include_router(queries.router)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)
    return app
