"""The FastAPI application: routes, error handling, middleware and start-up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.routing import BaseRoute

from api import console, problems, spark_session
from api.limits import Limiter
from api.metrics import Metrics, metrics_router
from api.middleware import BodySizeLimitMiddleware, ObservabilityMiddleware, RequestIdMiddleware
from api.openapi import complete_document
from api.routes import (
    budgets,
    consumers,
    datasets,
    health,
    ledger,
    limits,
    queries,
    transparency,
)
from api.settings import Settings
from api.spark_session import SparkConfig
from api.sweeper import start_sweeper
from db import bootstrap
from db.engine import Database
from db.migrate import upgrade
from privacy.plan_cache import set_plan_cache_bytes

DESCRIPTION = """\
Ruis answers only differentially private aggregate queries over sensitive
microdata, computed with OpenDP and charged against a per-consumer privacy
budget kept in a tamper-evident, hash-chained ledger.

Every endpoint but `/healthz`, `/readyz`, `/docs` and `/openapi.json` needs
`Authorization: Bearer <api key>`. Roles: **analyst** (its own budgets,
queries and releases), **admin** (consumers, keys, datasets, budgets, ledger),
**auditor** (read-only: budgets and the whole ledger). Errors are
`application/problem+json` (RFC 9457). Every response carries an
`X-Request-ID` header, which the ledger entries the request caused record too.
`/metrics` (Prometheus) needs no API key, only the metrics token when the
server sets `RUIS_METRICS_TOKEN`.
"""

TAGS = [
    {
        "name": "queries (analyst)",
        "description": "Preview, run and re-read differentially "
        "private releases, charged to the analyst's budget.",
    },
    {"name": "datasets", "description": "Datasets' public metadata (never the data)."},
    {"name": "budgets", "description": "Privacy budgets per consumer and dataset."},
    {
        "name": "ledger (admin, auditor)",
        "description": "The append-only, hash-chained ledger: read, verify, export.",
    },
    {"name": "consumers (admin)", "description": "Consumers and their API keys."},
    {"name": "health", "description": "Liveness and readiness, without authentication."},
    {"name": "operations", "description": "Prometheus metrics."},
]


class RuisApp(FastAPI):
    """FastAPI with Ruis' finishing touches on the OpenAPI document (:mod:`api.openapi`)."""

    api_routes: list[BaseRoute]
    """The routes of the included routers, as declared (paths are full templates)."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            complete_document(super().openapi(), self.api_routes)
        assert self.openapi_schema is not None
        return self.openapi_schema


def prepare(settings: Settings) -> Database:
    """Open the database, migrate it to the newest schema and create (or rotate the key of)
    the bootstrap admin; ValueError when the bootstrap key is too weak."""
    if settings.bootstrap_admin_key:  # a weak key stops start-up before anything is touched
        bootstrap.check_bootstrap_key(settings.bootstrap_admin_key)
    database = Database(settings.database_url)
    upgrade(database)
    if settings.bootstrap_admin_key:  # created, rotated when changed (logged), or unchanged
        bootstrap.ensure_bootstrap_admin(database, settings.bootstrap_admin_key)
    return database


def create_app(settings: Settings | None = None) -> FastAPI:
    """A configured application (settings from the environment when not given)."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if getattr(app.state, "db", None) is None:
            app.state.db = prepare(settings)
        sweeper = start_sweeper(app.state.db, settings)  # resolves releases left pending
        yield
        sweeper.stop()
        app.state.db.dispose()

    app = RuisApp(
        title="Ruis",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=TAGS,
        docs_url=None,  # replaced by api.console: local assets, no inline script
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = None
    metrics = Metrics(lambda: app.state.db)
    app.state.metrics = metrics
    app.state.limiter = Limiter(settings.limits)
    set_plan_cache_bytes(settings.limits.plan_cache_bytes)
    spark_session.configure(SparkConfig(settings.spark_master, settings.spark_data_roots))
    problems.install(app)
    routers = [
        health.router,
        consumers.router,
        datasets.router,
        budgets.router,
        ledger.router,
        transparency.router,
        limits.router,
        queries.router,
        metrics_router(metrics, settings.metrics_token),
    ]
    for router in routers:
        app.include_router(router)
    app.api_routes = [route for router in routers for route in router.routes]
    console.install(app)  # /ui, /ui/static, /docs, /redoc and / → /ui
    # Route templates for metrics and logs: the API's, then the app's own (/docs, ...).
    templates = [
        *app.api_routes,
        *(r for r in app.routes if isinstance(getattr(r, "path", None), str)),
    ]
    # Outermost last: request id → metrics and access log → body size limit → app.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(ObservabilityMiddleware, metrics=metrics, routes=templates)
    app.add_middleware(RequestIdMiddleware)
    return app
