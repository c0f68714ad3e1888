"""Fixtures for the console's tests: a served app with the ``events`` dataset, an analyst
with a budget and an auditor, and browsers-in-miniature (httpx clients that keep the
session cookie and send the Origin a browser would)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import ADMIN_KEY, Service
from tests.support.api import create_consumer, register_events, set_budget

ORIGIN = "http://testserver"


@dataclass(frozen=True)
class World:
    """The keys of the consumers the tests sign in as."""

    admin: str
    analyst: str
    auditor: str


@pytest.fixture
def world(server: Service, admin: httpx.Client) -> World:
    """``events`` registered, analyst ``ana`` with ε = 1 on it, auditor ``aud``."""
    register_events(server, admin)
    analyst = create_consumer(admin, "ana")
    auditor = create_consumer(admin, "aud", role="auditor")
    set_budget(admin, "ana", amount=1.0)
    return World(admin=ADMIN_KEY, analyst=analyst, auditor=auditor)


def browser(server: Service) -> httpx.Client:
    """A client like a browser on the console: no Authorization header, keeps cookies,
    sends this server's Origin on every request (as browsers do on POSTs)."""
    client = server.client()
    client.headers["Origin"] = ORIGIN
    return client


@pytest.fixture
def sign_in(server: Service) -> Callable[[str], httpx.Client]:
    """Sign in with a key through the form; the client holding the session cookie."""

    def _sign_in(key: str) -> httpx.Client:
        client = browser(server)
        response = client.post("/ui/login", data={"api_key": key})
        assert response.status_code == 303, response.text
        assert client.cookies.get("ruis_session") == key
        return client

    return _sign_in
