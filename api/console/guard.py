"""Who may see a console page: the signed-in consumer of the page's role; everyone else is
sent to sign in (no session) or shown a 403 page (another role, or a cross-origin POST)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from api.console.session import CrossOrigin, check_same_origin, signed_in
from api.console.templating import render
from db.accounts import Principal

NAV = {
    "auditor": (("Auditor", "/ui/auditor"),),
    "admin": (("Admin", "/ui/admin"),),
    "analyst": (("Analyst", "/ui/analyst"),),
}
"""The pages each role's navigation lists (besides the API docs and "Sign out")."""


class NotSignedIn(Exception):
    """A console page asked for without a valid session."""


class WrongRole(Exception):
    """A console page of another role than the signed-in consumer's."""

    def __init__(self, principal: Principal, needed: str) -> None:
        super().__init__(f"{principal.role} may not see the {needed} page")
        self.principal = principal
        self.needed = needed


@dataclass(frozen=True)
class Session:
    """The signed-in consumer and the API key its console calls the API with."""

    principal: Principal
    key: str

    def context(self, title: str, **values: Any) -> dict[str, Any]:
        """A template context: the page title, the navigation and ``values``."""
        return {"title": title, "nav": NAV[self.principal.role], "who": self.principal, **values}


async def session_of(request: Request, role: str) -> Session:
    """The session of a consumer with ``role``; raises :class:`NotSignedIn` or
    :class:`WrongRole`. A POST must also come from this server's own pages."""
    if request.method == "POST":
        check_same_origin(request)
    found = await signed_in(request)
    if found is None:
        raise NotSignedIn()
    principal, key = found
    if principal.role != role:
        raise WrongRole(principal, role)
    return Session(principal, key)


def _not_signed_in(request: Request, exc: Exception) -> Response:
    return RedirectResponse("/ui/login", status_code=303)


def _wrong_role(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, WrongRole)
    context = {
        "title": "Forbidden",
        "nav": NAV[exc.principal.role],
        "who": exc.principal,
        "message": f"This page is for the {exc.needed} role; you are signed in as "
        f"{exc.principal.role}.",
    }
    return render(request, "console/forbidden.html", context, status_code=403)


def _cross_origin(request: Request, exc: Exception) -> Response:
    context = {
        "title": "Forbidden",
        "nav": (),
        "who": None,
        "message": "This form was not sent from this server's own pages (Origin check).",
    }
    return render(request, "console/forbidden.html", context, status_code=403)


def install_handlers(app: FastAPI) -> None:
    """Map the console's refusals to a redirect or a 403 page."""
    app.add_exception_handler(NotSignedIn, _not_signed_in)
    app.add_exception_handler(WrongRole, _wrong_role)
    app.add_exception_handler(CrossOrigin, _cross_origin)
