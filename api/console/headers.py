"""Security headers for the console and the docs pages: a strict Content-Security-Policy
that allows only this server's own scripts, styles, images and fonts, and no framing."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
"""Every ``/ui`` response: nothing but same-origin assets, no inline script or style."""

DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; worker-src blob:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""``/docs`` and ``/redoc``: Swagger UI and ReDoc set inline styles and ReDoc starts a
worker from a blob; scripts and everything else are still same-origin only."""

_COMMON = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


def policy_for(path: str) -> str | None:
    """The CSP for a request path, or None for the API's own routes."""
    if path == "/" or path == "/ui" or path.startswith("/ui/"):
        return CONSOLE_CSP
    if path in ("/docs", "/redoc") or path.startswith("/docs/"):
        return DOCS_CSP
    return None


class SecurityHeadersMiddleware:
    """Add the CSP and the other security headers to console and docs responses."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        policy = policy_for(scope.get("path", "")) if scope["type"] == "http" else None
        if policy is None:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() != b"content-security-policy"
                ]
                headers.append((b"content-security-policy", policy.encode()))
                headers.extend(_COMMON)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
