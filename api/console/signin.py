"""Signing in and out of the console, and ``/ui`` itself."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.console.session import (
    ROLE_PAGES,
    authenticate,
    check_same_origin,
    end_session,
    form_fields,
    signed_in,
    start_session,
)
from api.console.templating import render

router = APIRouter()


@router.get("/ui")
async def console_home(request: Request) -> Response:
    """The signed-in consumer's page, or the sign-in form."""
    found = await signed_in(request)
    target = ROLE_PAGES[found[0].role] if found else "/ui/login"
    return RedirectResponse(target, status_code=303)


@router.get("/ui/login", response_class=HTMLResponse)
async def login_form(request: Request) -> Response:
    """The sign-in form: an API key."""
    return render(request, "console/login.html", {"title": "Sign in", "nav": (), "who": None})


@router.post("/ui/login")
async def login(request: Request) -> Response:
    """Check the API key; on success start the session and go to the role's page."""
    check_same_origin(request)
    key = (await form_fields(request)).get("api_key", "").strip()
    principal = await authenticate(request, key)
    if principal is None:
        context = {
            "title": "Sign in",
            "nav": (),
            "who": None,
            "error": "That API key is not valid.",
        }
        return render(request, "console/login.html", context, status_code=401)
    response = RedirectResponse(ROLE_PAGES[principal.role], status_code=303)
    start_session(request, response, key)
    return response


@router.get("/ui/logout")
async def logout_address() -> Response:
    """Signing out is a POST; the address itself leads to ``/ui``."""
    return RedirectResponse("/ui", status_code=303)


@router.post("/ui/logout")
async def logout(request: Request) -> Response:
    """End the session."""
    check_same_origin(request)
    response = RedirectResponse("/ui/login", status_code=303)
    end_session(request, response)
    return response
