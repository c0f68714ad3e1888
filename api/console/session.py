"""The console's session: the API key in an HttpOnly, SameSite=Strict cookie scoped to
``/ui``, and the same-origin check every console POST must pass (CSRF, beside SameSite).

The key is the session: it is never put in a URL or a page, and signing out (or revoking
the key) ends it."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import MAX_KEY_LENGTH, get_db
from db import accounts
from db.accounts import Principal

COOKIE = "ruis_session"
COOKIE_PATH = "/ui"
ROLE_PAGES = {"auditor": "/ui/auditor", "admin": "/ui/admin", "analyst": "/ui/analyst"}
FORM_TYPE = "application/x-www-form-urlencoded"


class CrossOrigin(Exception):
    """A console POST whose Origin (or Referer) is not this server's own origin."""


def session_key(request: Request) -> str | None:
    """The API key of the signed-in consumer, from the session cookie."""
    key = request.cookies.get(COOKIE)
    return key if key and len(key) <= MAX_KEY_LENGTH else None


async def authenticate(request: Request, key: str | None) -> Principal | None:
    """The consumer whose unrevoked key is ``key`` (as the API's edge checks it), or None."""
    if not key or len(key) > MAX_KEY_LENGTH:
        return None
    return await run_in_threadpool(accounts.authenticate, get_db(request), key)


async def signed_in(request: Request) -> tuple[Principal, str] | None:
    """The signed-in consumer and its key, or None when there is no valid session."""
    key = session_key(request)
    principal = await authenticate(request, key)
    return (principal, key) if principal is not None and key is not None else None


def start_session(request: Request, response: Response, key: str) -> None:
    """Set the session cookie (Secure when the request came over TLS; no Max-Age: it
    ends with the browser session)."""
    response.set_cookie(
        COOKIE,
        key,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def end_session(request: Request, response: Response) -> None:
    """Clear the session cookie."""
    response.delete_cookie(
        COOKIE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def own_origin(request: Request) -> str:
    """This server's origin as the browser sees it (scheme://host[:port])."""
    return f"{request.url.scheme}://{request.url.netloc}"


def check_same_origin(request: Request) -> None:
    """Raise :class:`CrossOrigin` unless the request comes from this server's own pages:
    its Origin (or, without one, its Referer) is this server's origin.

    The console's ``Referrer-Policy: no-referrer`` makes a browser send ``Origin: null``
    (and no Referer) even for its own forms; then the browser's ``Sec-Fetch-Site``
    header, which no page can set, must say ``same-origin``."""
    origin = request.headers.get("origin")
    if origin in (None, "null"):
        if request.headers.get("sec-fetch-site") == "same-origin":
            return
        referer = request.headers.get("referer")
        if origin is not None or referer is None:
            raise CrossOrigin("no Origin or Referer of this server")
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    if origin.lower() != own_origin(request).lower():
        raise CrossOrigin(f"origin {origin!r} is not this server")


async def form_fields(request: Request) -> dict[str, str]:
    """A URL-encoded form's fields (the last value of a repeated name); empty for any
    other body."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM_TYPE:
        return {}
    body = (await request.body()).decode("utf-8", errors="replace")
    return dict(parse_qsl(body, keep_blank_values=True))
