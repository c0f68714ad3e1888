"""Prometheus metrics: requests, release latency, refused queries and spent budgets.

``GET /metrics`` serves, in the Prometheus text format:

- ``ruis_http_requests_total{method, route, status}`` — requests by route
  *template* (``/v1/consumers/{name}/keys``, never the raw path);
- ``ruis_http_request_duration_seconds{method, route}`` — request latency;
- ``ruis_release_duration_seconds`` — latency of answered ``POST /v1/queries``
  (released or served from cache);
- ``ruis_queries_refused_total{reason}`` — ``POST /v1/queries`` refused for
  ``budget_exceeded`` (409) or as an ``invalid_query`` (422);
- ``ruis_budget_total`` / ``ruis_budget_spent{consumer, dataset, model, unit}``
  and ``ruis_dataset_cap_total`` / ``ruis_dataset_cap_spent{dataset, model,
  unit}`` — privacy budgets, read from the database at scrape time, so they are
  the same whichever worker or replica answers.

Nothing here is private: spent and total budgets are what admins and auditors
read from ``/v1/budgets``, and no released value or data value is exported.
Consumer and dataset names and how much each spent are, however, internal
information: set ``RUIS_METRICS_TOKEN`` to make ``/metrics`` require
``Authorization: Bearer <token>`` (unset, it is open, as scrapers expect).

Counters and histograms are per process. ``ruis serve --workers N`` therefore
runs in Prometheus' multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``), in which
every worker's scrape reports the sum over all workers.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable, Iterable
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from api.openapi import problems
from api.problems import Unauthorized
from db import budgets, catalog
from db.amounts import MODEL_UNITS, as_json_number
from db.engine import Database

log = logging.getLogger("ruis.metrics")

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED_ROUTE = "<unmatched>"
REFUSAL_REASONS = {409: "budget_exceeded", 422: "invalid_query", 429: "too_many_requests"}
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def multiprocess_mode() -> bool:
    """Whether metrics are shared between worker processes through ``PROMETHEUS_MULTIPROC_DIR``."""
    return bool(os.environ.get(MULTIPROCESS_ENV))


class BudgetCollector(Collector):
    """Budgets and dataset caps, read from the database at each scrape."""

    def __init__(self, database: Callable[[], Database | None]) -> None:
        self._database = database

    def _families(self) -> list[GaugeMetricFamily]:
        labels = ["consumer", "dataset", "model", "unit"]
        cap_labels = ["dataset", "model", "unit"]
        return [
            GaugeMetricFamily(
                "ruis_budget_total",
                "Privacy budget granted to a consumer on "
                "a dataset, in the budget's unit (epsilon or rho)",
                labels=labels,
            ),
            GaugeMetricFamily(
                "ruis_budget_spent",
                "Privacy budget spent by a consumer on a "
                "dataset, in the budget's unit (epsilon or rho)",
                labels=labels,
            ),
            GaugeMetricFamily(
                "ruis_dataset_cap_total",
                "A dataset's cap on what all consumers together may spend",
                labels=cap_labels,
            ),
            GaugeMetricFamily(
                "ruis_dataset_cap_spent",
                "What all consumers together spent under a dataset's cap",
                labels=cap_labels,
            ),
        ]

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        total, spent, cap_total, cap_spent = self._families()
        ok = GaugeMetricFamily(
            "ruis_budget_scrape_ok",
            "1 when budgets were read from the "
            "database at this scrape, 0 when it could not be read",
        )
        database = self._database()
        try:
            if database is None:
                raise RuntimeError("the database is not open yet")
            for view in budgets.list_budgets(database):
                labels = [view.consumer, view.dataset, view.model, MODEL_UNITS[view.model]]
                total.add_metric(labels, float(as_json_number(view.total_units)))
                spent.add_metric(labels, float(as_json_number(view.spent_units)))
            for dataset in catalog.list_datasets(database):
                if dataset.cap_model is None or dataset.cap_total_units is None:
                    continue
                labels = [dataset.name, dataset.cap_model, MODEL_UNITS[dataset.cap_model]]
                cap_total.add_metric(labels, float(as_json_number(dataset.cap_total_units)))
                cap_spent.add_metric(labels, float(as_json_number(dataset.cap_spent_units)))
            ok.add_metric([], 1.0)
        except Exception as exc:
            log.warning("budgets could not be read for /metrics", exc_info=exc)
            total, spent, cap_total, cap_spent = self._families()
            ok.add_metric([], 0.0)
        yield from (total, spent, cap_total, cap_spent, ok)


class Metrics:
    """The metrics of one application (its own registry, so several apps can coexist)."""

    def __init__(self, database: Callable[[], Database | None]) -> None:
        self.registry = CollectorRegistry()
        self.budgets = BudgetCollector(database)
        self.registry.register(self.budgets)
        self.requests = Counter(
            "ruis_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "ruis_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.release_duration = Histogram(
            "ruis_release_duration_seconds",
            "Latency of answered POST /v1/queries (released or served from cache)",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.refused = Counter(
            "ruis_queries_refused",
            "POST /v1/queries refused, by reason",
            ["reason"],
            registry=self.registry,
        )
        for reason in REFUSAL_REASONS.values():
            self.refused.labels(reason=reason)

    def observe(self, *, method: str, route: str, status: int, seconds: float) -> None:
        """Record one finished request."""
        self.requests.labels(method=method, route=route, status=str(status)).inc()
        self.request_duration.labels(method=method, route=route).observe(seconds)
        if method == "POST" and route == "/v1/queries":
            if status == 200:
                self.release_duration.observe(seconds)
            elif status in REFUSAL_REASONS:
                self.refused.labels(reason=REFUSAL_REASONS[status]).inc()

    def exposition(self) -> bytes:
        """The text exposition of every metric (summed over workers in multiprocess mode)."""
        if not multiprocess_mode():
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(self.budgets)
        return generate_latest(registry)


_metrics_bearer = HTTPBearer(
    scheme_name="MetricsToken",
    auto_error=False,
    description="RUIS_METRICS_TOKEN, needed only when the server sets it",
)


def metrics_router(metrics: Metrics, token: str | None) -> APIRouter:
    """The ``GET /metrics`` route, open or behind ``token``."""
    router = APIRouter(tags=["operations"])

    @router.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {
                "content": {"text/plain": {"schema": {"type": "string"}}},
                "description": "The Prometheus text exposition format",
            },
            **problems(
                401,
                notes={401: "RUIS_METRICS_TOKEN is set and the bearer token is missing or wrong"},
            ),
        },
        openapi_extra={"security": [{}]},
    )  # appended: the token is optional
    def prometheus_metrics(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_metrics_bearer)],
    ) -> Response:
        """Prometheus metrics: requests, release latency, refusals, budgets. No API key;
        when the server sets ``RUIS_METRICS_TOKEN``, send it as a bearer token."""
        if token is not None:
            given = credentials.credentials if credentials is not None else ""
            if not hmac.compare_digest(given.encode(), token.encode()):
                raise Unauthorized(
                    "/metrics needs the metrics token: Authorization: Bearer <RUIS_METRICS_TOKEN>"
                )
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return router
