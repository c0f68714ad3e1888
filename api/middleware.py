"""ASGI middleware: request ids, metrics and access logs, and the request body size limit."""

from __future__ import annotations

import logging
import re
import secrets
import time

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.logs import ACCESS_LOGGER, request_id_var
from api.metrics import UNMATCHED_ROUTE, Metrics
from api.problems import (
    INTERNAL_ERROR,
    PAYLOAD_TOO_LARGE,
    problem_document,
    problem_response,
)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
access_log = logging.getLogger(ACCESS_LOGGER)


class RequestIdMiddleware:
    """Give each request an id (a sane client ``X-Request-ID`` or a new one); echo it back.

    Also on a 500: when the app fails before it answers, this sends the generic
    problem itself, so the response still names the request id that the error
    was logged under (the exception then goes on to be logged as usual).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = supplied if _REQUEST_ID.match(supplied) else "req_" + secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if not started:
                # The same problem as api.problems' handler for unexpected errors.
                response = problem_response(
                    INTERNAL_ERROR.status,
                    INTERNAL_ERROR.type,
                    INTERNAL_ERROR.title,
                    "the server failed to handle this request",
                )
                await response(scope, receive, send_with_id)
            raise
        finally:
            request_id_var.reset(token)


def route_template(scope: Scope, routes: list[BaseRoute]) -> str:
    """The path template of the route serving ``scope`` (never the raw path, whose
    values would make one time series per consumer, key or release id)."""
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        template = getattr(route, "path", None)
        if match == Match.FULL and isinstance(template, str):
            return template
        if match == Match.PARTIAL and partial is None and isinstance(template, str):
            partial = template  # the path exists, the method does not (405)
    return partial or UNMATCHED_ROUTE


class ObservabilityMiddleware:
    """Count and time each request (:mod:`api.metrics`) and write its access log line.

    The line (logger ``ruis.access``) has the method, the route template, the
    status, the duration and the authenticated consumer's name; never the body,
    the query string or anything released.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: list[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless the app starts a response

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            seconds = time.perf_counter() - started
            method = str(scope.get("method", ""))
            route = route_template(scope, self.routes)
            self.metrics.observe(method=method, route=route, status=status, seconds=seconds)
            state = scope.get("state") or {}
            principal = state.get("principal")
            access_log.info(
                "%s %s %d",
                method,
                route,
                status,
                extra={
                    "request_id": state.get("request_id"),
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "consumer": getattr(principal, "name", None),
                },
            )


class _TooLarge(Exception):
    pass


class BodySizeLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with a 413 problem, before parsing them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, send: Send) -> None:
        body = problem_document(
            PAYLOAD_TOO_LARGE, f"request bodies are limited to {self.max_bytes} bytes"
        )
        await send(
            {
                "type": "http.response.start",
                "status": PAYLOAD_TOO_LARGE.status,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_large = int(length) > self.max_bytes
            except ValueError:
                too_large = True
            if too_large:
                await self._reject(send)
                return
        received = 0
        started = False
        rejected = False

        async def limited_receive() -> Message:
            # Over the limit: answer 413 at once and end the request. The app may catch
            # the exception (FastAPI turns body errors into a 400); whatever it sends
            # afterwards is dropped by ``tracking_send``.
            nonlocal received, rejected
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if not rejected:
                        rejected = True
                        if not started:
                            await self._reject(send)
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if rejected:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except Exception:
            if not rejected:
                raise
