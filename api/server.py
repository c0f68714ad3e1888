"""The HTTP edge: how uvicorn serves Ruis, with limits a client cannot talk its way past.

uvicorn's defaults (the httptools parser, no limit on a header's size, no
deadline before a request's headers or body are complete) let one client
without an API key hold the event loop (a 200 MB header parsed for 48 s) or
hold connections open forever (slowloris). :func:`server_config` builds the
one :class:`uvicorn.Config` that ``ruis serve`` and the tests use:

- the pure-Python h11 parser, whose ``h11_max_incomplete_event_size`` bounds
  the request line plus headers (``max_header_bytes``; more is a 431 and the
  connection is closed, after reading at most one socket read beyond it);
- uvicorn's own ``limit_concurrency`` (``max_connections``: open connections
  or running requests beyond it are answered 503), ``backlog`` and
  ``timeout_keep_alive`` (an idle kept-alive connection is closed);
- :class:`GuardedH11Protocol`, uvicorn's h11 protocol with what uvicorn lacks:
  a header deadline (``header_timeout``: from the connection, or from the first
  byte of the next request on a kept-alive connection, until the headers are
  complete; then a 408 and the connection is closed: slowloris), a body
  deadline (``body_timeout``: from the end of the headers until the whole body
  has arrived, however it trickles; then a 408 and close) and a limit on the
  number of header fields (``max_headers``; more is a 431).

Every limit is read from the environment by :meth:`EdgeLimits.from_env`; the
README's operations section lists them with their defaults.
"""

from __future__ import annotations

import asyncio
import functools
import os
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import h11
import uvicorn
from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState
from uvicorn.supervisors import Multiprocess

from api.problems import (
    HEADERS_TOO_LARGE,
    REQUEST_TIMEOUT,
    TOO_MANY_CONNECTIONS,
    ProblemType,
    problem_document,
)


@dataclass(frozen=True)
class EdgeLimits:
    """Limits on what one connection may send, and how slowly."""

    max_header_bytes: int = 16 * 1024
    """Request line plus header fields, in bytes (431 beyond)."""
    max_headers: int = 100
    """Header fields per request (431 beyond)."""
    header_timeout: float = 10.0
    """Seconds from the connection (or the next request's first byte) to complete headers."""
    body_timeout: float = 30.0
    """Seconds from complete headers to the complete body."""
    keep_alive_timeout: int = 5
    """Seconds an idle kept-alive connection stays open."""
    max_connections: int = 1000
    """Open connections (and running requests) at once; more are answered 503."""
    backlog: int = 2048
    """Connections the kernel queues before they are accepted."""

    ENV: ClassVar[dict[str, str]] = {
        "max_header_bytes": "RUIS_MAX_HEADER_BYTES",
        "max_headers": "RUIS_MAX_HEADERS",
        "header_timeout": "RUIS_HEADER_TIMEOUT",
        "body_timeout": "RUIS_BODY_TIMEOUT",
        "keep_alive_timeout": "RUIS_KEEP_ALIVE_TIMEOUT",
        "max_connections": "RUIS_MAX_CONNECTIONS",
        "backlog": "RUIS_BACKLOG",
    }

    def __post_init__(self) -> None:
        for name in self.ENV:
            if not getattr(self, name) > 0:
                raise ValueError(f"{self.ENV[name]} must be positive")

    @classmethod
    def from_env(cls) -> EdgeLimits:
        """The limits from ``RUIS_MAX_HEADER_BYTES``, ``RUIS_MAX_HEADERS``,
        ``RUIS_HEADER_TIMEOUT``, ``RUIS_BODY_TIMEOUT``, ``RUIS_KEEP_ALIVE_TIMEOUT``,
        ``RUIS_MAX_CONNECTIONS`` and ``RUIS_BACKLOG``; the field defaults where unset.
        Raises ValueError naming the variable when one is not a positive number."""
        values: dict[str, Any] = {}
        for name, variable in cls.ENV.items():
            text = os.environ.get(variable)
            if not text:
                continue
            kind = float if name.endswith("_timeout") and name != "keep_alive_timeout" else int
            try:
                values[name] = kind(text)
            except ValueError:
                raise ValueError(
                    f"{variable} must be a positive {kind.__name__}, got {text!r}"
                ) from None
        return cls(**values)


def _raw_problem(problem: ProblemType, detail: str) -> bytes:
    """A complete HTTP/1.1 problem+json response that closes the connection."""
    body = problem_document(problem, detail)
    head = (
        f"HTTP/1.1 {problem.status} {problem.title}\r\ncontent-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode()
    return head + body


async def _send_problem(
    send: ASGISendCallable,
    problem: ProblemType,
    detail: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer ``problem`` and close the connection, without the app."""
    await send(
        {
            "type": "http.response.start",
            "status": problem.status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                *(headers or []),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": problem_document(problem, detail)})


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus header and body deadlines and a header count limit.

    Guarantees, per connection: headers not complete ``header_timeout`` seconds
    after the connection was made (or after the first byte of a later request on
    it) get a 408 and the connection closed; a body not complete
    ``body_timeout`` seconds after its headers gets a 408 (unless the app has
    already answered) and the connection closed; a request with more than
    ``max_headers`` header fields gets a 431 without reaching the app; headers
    over ``max_header_bytes`` get a 431 (h11's limit) instead of uvicorn's 400.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: EdgeLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        # The connection limit is checked by _guard's wrapper, which answers a
        # problem+json 503; uvicorn's own check (a text/plain 503) is turned off here.
        self.limit_concurrency = None
        self.app = self._guard(self.app)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._body_deadline: asyncio.TimerHandle | None = None

    # --- deadlines -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline = self.loop.call_later(
            self.limits.header_timeout, self._header_timed_out
        )

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and self._header_deadline is None:
            # The first byte of another request on a kept-alive connection.
            self._header_deadline = self.loop.call_later(
                self.limits.header_timeout, self._header_timed_out
            )
        super().data_received(data)

    def handle_events(self) -> None:
        # Called for received data and, after a response, for pipelined requests.
        super().handle_events()
        self._follow_request_state()

    def _follow_request_state(self) -> None:
        state = self.conn.their_state
        if state is not h11.IDLE:
            self._cancel_header_deadline()
        if state is h11.SEND_BODY:
            if self._body_deadline is None:
                self._body_deadline = self.loop.call_later(
                    self.limits.body_timeout, self._body_timed_out
                )
        else:
            self._cancel_body_deadline()

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _cancel_body_deadline(self) -> None:
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        self._cancel_body_deadline()
        super().connection_lost(exc)

    def _header_timed_out(self) -> None:
        self._header_deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.conn.trailing_data[0]:  # a request was started but not finished
            self.transport.write(
                _raw_problem(
                    REQUEST_TIMEOUT,
                    f"the request headers did not arrive within {self.limits.header_timeout:g} s",
                )
            )
        self.transport.close()

    def _body_timed_out(self) -> None:
        self._body_deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY:
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            self.transport.write(
                _raw_problem(
                    REQUEST_TIMEOUT,
                    f"the request body did not arrive within {self.limits.body_timeout:g} s",
                )
            )
        if cycle is not None:  # the app's receive() now returns http.disconnect
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()

    # --- limits checked before the app --------------------------------------------

    def _over_capacity(self) -> bool:
        """uvicorn's ``limit_concurrency`` rule: this request's connection and task are
        already counted, so at most ``max_connections`` − 1 others may be open."""
        limit = self.limits.max_connections
        return len(self.connections) >= limit or len(self.tasks) > limit

    def _guard(self, app: ASGI3Application) -> ASGI3Application:
        """``app`` behind the connection limit (a 503 with ``Retry-After``) and the header
        count limit (a 431), neither of which reaches the app."""

        async def guarded(
            scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
        ) -> None:
            headers = cast(list[tuple[bytes, bytes]], scope.get("headers") or [])
            if self._over_capacity():
                self.logger.warning("Exceeded concurrency limit.")
                await _send_problem(
                    send,
                    TOO_MANY_CONNECTIONS,
                    f"the server holds at most {self.limits.max_connections} connections and "
                    f"requests at once; try again shortly",
                    [(b"retry-after", b"1")],
                )
            elif len(headers) > self.limits.max_headers:
                await _send_problem(
                    send,
                    HEADERS_TOO_LARGE,
                    f"requests are limited to {self.limits.max_headers} header fields",
                )
            else:
                await app(scope, receive, send)

        return guarded

    def send_400_response(self, msg: str) -> None:
        if len(self.conn.trailing_data[0]) > self.limits.max_header_bytes:
            self.transport.write(
                _raw_problem(
                    HEADERS_TOO_LARGE,
                    f"the request line and headers are limited to {self.limits.max_header_bytes} "
                    f"bytes",
                )
            )
            self.transport.close()
            return
        super().send_400_response(msg)


def server_config(
    app: Any, *, host: str, port: int, limits: EdgeLimits | None = None, **options: Any
) -> uvicorn.Config:
    """The uvicorn configuration Ruis is served with: :class:`GuardedH11Protocol` and
    uvicorn's own limits from ``limits`` (default: :meth:`EdgeLimits.from_env`).

    ``app`` is the ASGI app or, with ``workers`` > 1, its import string;
    ``options`` are further :class:`uvicorn.Config` arguments (log level, workers, ...).
    """
    limits = limits or EdgeLimits.from_env()
    protocol = functools.partial(GuardedH11Protocol, limits=limits)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=cast(Any, protocol),
        h11_max_incomplete_event_size=limits.max_header_bytes,
        limit_concurrency=limits.max_connections,
        backlog=limits.backlog,
        timeout_keep_alive=limits.keep_alive_timeout,
        **options,
    )


def run(config: uvicorn.Config) -> None:
    """Serve ``config`` until interrupted: in this process, or in ``config.workers``
    worker processes sharing one socket (as ``uvicorn.run`` does)."""
    if config.workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        uvicorn.Server(config).run()
