"""Structured logs: one JSON object per line, tagged with the request they belong to.

Every line has ``time``, ``level``, ``logger`` and ``message``; lines written
while a request is handled also carry its ``request_id`` (the ``X-Request-ID``
sent back to the client and stored on the ledger entries it caused). The access
line written once per request adds ``method``, ``route`` (the route template,
never the raw path), ``status``, ``duration_ms`` and ``consumer`` (the caller's
name, once authenticated).

What is never logged: API keys, request or response bodies, query results or
any value read from a data file. Exception *messages* are left out as well,
because a library error can quote the value it choked on; a logged exception
keeps its type and stack frames only.
"""

from __future__ import annotations

import json
import logging
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

ACCESS_LOGGER = "ruis.access"
ACCESS_FIELDS = ("method", "route", "status", "duration_ms", "consumer")

request_id_var: ContextVar[str | None] = ContextVar("ruis_request_id", default=None)
"""The id of the request being handled in this context (set by the request-id middleware)."""


class RequestContextFilter(logging.Filter):
    """Put the current request's id on every record made while handling it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """Format a record as one line of JSON (see the module docstring for the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        document: dict[str, Any] = {
            "time": moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            document["request_id"] = request_id
        for name in ACCESS_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                document[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            exc_type, _, tb = record.exc_info
            document["exception"] = f"{exc_type.__module__}.{exc_type.__qualname__}"
            document["stack"] = "".join(traceback.format_tb(tb))
        return json.dumps(document, ensure_ascii=False, default=str)


def logging_config(level: str = "info") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` that writes JSON lines to stderr.

    Uvicorn's own loggers propagate to it; uvicorn's access log is switched off
    because :class:`api.middleware.ObservabilityMiddleware` writes a richer one
    (``ruis.access``). Uvicorn applies this in every worker process.
    """
    level_name = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request": {"()": "api.logs.RequestContextFilter"}},
        "formatters": {"json": {"()": "api.logs.JsonFormatter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "json",
                "filters": ["request"],
            },
        },
        "root": {"level": level_name, "handlers": ["stderr"]},
        "loggers": {
            "uvicorn": {"level": level_name, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level_name, "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        },
    }
