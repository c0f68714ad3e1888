"""The real app in-process: ``create_app(settings)`` with its lifespan entered once, on an
event loop in a thread of its own, and ``httpx.Client``s whose transport calls the ASGI app
directly instead of going through a socket and uvicorn.

What runs is the very app ``ruis serve`` runs: the same middleware stack (request id,
metrics and access log, body size limit), problem handlers, routes, worker threads for
synchronous code and the lifespan (migrations, bootstrap admin, the sweeper). What it
skips is the HTTP edge only: uvicorn's parser and its limits (:mod:`api.server`),
sockets, client disconnects and the ``server``/``date`` headers uvicorn adds. Tests of
those run against uvicorn (the ``live`` marker, :func:`tests.conftest.start_server`).

Requests are handed to :class:`httpx.ASGITransport` on the app's loop; the response is
read whole there (as a client reading it to the end would) and given back to the caller's
thread. Several threads may send requests at once: they run concurrently on the one loop,
as they would under uvicorn.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import httpx
from fastapi import FastAPI

from api.app import create_app
from api.settings import Settings

BASE_URL = "http://testserver"
CLIENT_ADDRESS = ("127.0.0.1", 50000)


class AppTransport(httpx.BaseTransport):
    """A synchronous httpx transport that calls ``app`` on ``portal``'s event loop.

    Closing it does nothing: one transport serves every client of the app, and the app's
    lifespan (not a client) decides when it stops."""

    def __init__(self, app: FastAPI, portal: anyio.from_thread.BlockingPortal) -> None:
        # An exception the app does not handle is a 500 with an empty body, as uvicorn
        # answers it; the app's own ServerErrorMiddleware answers it first anyway.
        self._asgi = httpx.ASGITransport(app, raise_app_exceptions=False, client=CLIENT_ADDRESS)
        self._portal = portal

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()  # the body as bytes, in a stream the async transport can read too

        async def call() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            response = await self._asgi.handle_async_request(request)
            body = await response.aread()
            return response.status_code, response.headers.raw, body

        status, headers, body = self._portal.call(call)
        return httpx.Response(
            status, headers=headers, stream=httpx.ByteStream(body), request=request
        )

    def close(self) -> None:
        pass


@dataclass
class InProcessApp:
    """The app with its lifespan entered, and the clients handed out for it."""

    settings: Settings
    app: FastAPI
    transport: AppTransport
    _stack: contextlib.ExitStack
    url: str = BASE_URL
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, key: str | None = None) -> httpx.Client:
        """A client, authenticated with ``key`` when given (closed with the app)."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        client = httpx.Client(
            base_url=self.url, headers=headers, transport=self.transport, timeout=60
        )
        self.clients.append(client)
        return client

    def stop(self) -> None:
        """Close the clients, run the lifespan's shutdown and stop the loop."""
        for client in self.clients:
            client.close()
        self._stack.close()


async def _lifespan(
    app: FastAPI, stop: list[anyio.Event], *, task_status: anyio.abc.TaskStatus[None]
) -> None:
    """Drive ``app``'s lifespan as uvicorn does (the ASGI lifespan protocol, through the
    whole middleware stack): start-up, then, once ``stop[0]`` is set, shut-down."""
    to_app, app_inbox = anyio.create_memory_object_stream[dict[str, Any]](2)
    app_outbox, from_app = anyio.create_memory_object_stream[dict[str, Any]](2)
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}

    async def run() -> None:
        await app(scope, app_inbox.receive, app_outbox.send)

    async with to_app, app_inbox, app_outbox, from_app, anyio.create_task_group() as group:
        group.start_soon(run)
        await to_app.send({"type": "lifespan.startup"})
        started = await from_app.receive()
        if started["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"the app did not start: {started.get('message', '')}")
        stop.append(anyio.Event())
        task_status.started()
        await stop[0].wait()
        await to_app.send({"type": "lifespan.shutdown"})
        stopped = await from_app.receive()
        if stopped["type"] != "lifespan.shutdown.complete":
            raise RuntimeError(f"the app did not stop cleanly: {stopped.get('message', '')}")


def start_app(settings: Settings) -> InProcessApp:
    """``create_app(settings)`` started (its lifespan entered) on a loop in a thread."""
    app = create_app(settings)
    stack = contextlib.ExitStack()
    try:
        portal = stack.enter_context(anyio.from_thread.start_blocking_portal())
        stop: list[anyio.Event] = []
        lifespan: Future[None]
        lifespan, _ = portal.start_task(_lifespan, app, stop)

        def shut_down() -> None:
            portal.call(stop[0].set)
            lifespan.result(timeout=30)

        stack.callback(shut_down)
    except BaseException:
        stack.close()
        raise
    return InProcessApp(
        settings=settings, app=app, transport=AppTransport(app, portal), _stack=stack
    )
