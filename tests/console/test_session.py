"""Signing in and out of the console: the session cookie's attributes, bad keys, roles,
and the same-origin check on every POST."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.conftest import Service
from tests.console.conftest import World, browser
from tests.console.html import parse


def _set_cookie(response: httpx.Response) -> list[str]:
    return [part.strip() for part in response.headers["set-cookie"].split(";")]


def test_sign_in_sets_a_strict_httponly_session_cookie(server: Service, world: World) -> None:
    client = browser(server)
    response = client.post("/ui/login", data={"api_key": world.analyst})
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/analyst"
    attributes = _set_cookie(response)
    assert attributes[0] == f"ruis_session={world.analyst}"
    lowered = [a.lower() for a in attributes]
    assert "httponly" in lowered
    assert "samesite=strict" in lowered
    assert "path=/ui" in lowered
    assert "secure" not in lowered  # plain http here
    assert not any(a.startswith(("max-age", "expires")) for a in lowered)  # a session cookie
    assert world.analyst not in response.headers["location"]
    page = client.get("/ui/analyst")
    assert page.status_code == 200
    assert world.analyst not in page.text


def test_the_cookie_is_secure_over_https(server: Service, world: World) -> None:
    client = httpx.Client(transport=server.transport, base_url="https://testserver")
    with client:
        response = client.post(
            "/ui/login", data={"api_key": world.auditor}, headers={"Origin": "https://testserver"}
        )
    assert response.status_code == 303
    assert "secure" in [a.lower() for a in _set_cookie(response)]


def test_each_role_lands_on_its_page(server: Service, world: World) -> None:
    for key, page in (
        (world.admin, "admin"),
        (world.analyst, "analyst"),
        (world.auditor, "auditor"),
    ):
        client = browser(server)
        assert client.post("/ui/login", data={"api_key": key}).headers["location"] == f"/ui/{page}"
        assert client.get("/ui").headers["location"] == f"/ui/{page}"
        assert client.get(f"/ui/{page}").status_code == 200


def test_a_bad_key_is_401_with_an_alert_and_no_cookie(server: Service, world: World) -> None:
    client = browser(server)
    response = client.post("/ui/login", data={"api_key": "ruis_not-a-key-at-all"})
    assert response.status_code == 401
    assert "set-cookie" not in response.headers
    page = parse(response.text)
    assert page.texts("*", role="alert") == ["That API key is not valid."]
    assert "ruis_not-a-key-at-all" not in response.text
    assert page.all("input", name="api_key", type="password")


def test_without_a_session_pages_send_you_to_sign_in(server: Service, world: World) -> None:
    client = browser(server)
    assert client.get("/ui").headers["location"] == "/ui/login"
    for page in ("/ui/admin", "/ui/analyst", "/ui/auditor", "/ui/analyst/releases/rel_x"):
        response = client.get(page)
        assert (response.status_code, response.headers["location"]) == (303, "/ui/login")
    client.cookies.set("ruis_session", "ruis_forged", path="/ui")
    assert client.get("/ui/analyst").headers["location"] == "/ui/login"


def test_another_roles_page_is_403(sign_in: Callable[[str], httpx.Client], world: World) -> None:
    analyst = sign_in(world.analyst)
    for page in ("/ui/admin", "/ui/auditor"):
        response = analyst.get(page)
        assert response.status_code == 403
        assert "analyst" in parse(response.text).texts("*", role="alert")[0]
    auditor = sign_in(world.auditor)
    assert auditor.get("/ui/analyst").status_code == 403
    assert (
        auditor.post("/ui/admin/consumers", data={"name": "x", "role": "admin"}).status_code == 403
    )


def test_sign_out_clears_the_cookie(sign_in: Callable[[str], httpx.Client], world: World) -> None:
    client = sign_in(world.analyst)
    response = client.post("/ui/logout")
    assert (response.status_code, response.headers["location"]) == (303, "/ui/login")
    lowered = [a.lower() for a in _set_cookie(response)]
    assert lowered[0] == 'ruis_session=""'
    assert "max-age=0" in lowered
    assert "ruis_session" not in client.cookies
    assert client.get("/ui/analyst").headers["location"] == "/ui/login"


def test_a_revoked_key_ends_the_session(
    server: Service, admin: httpx.Client, sign_in: Callable[[str], httpx.Client], world: World
) -> None:
    client = sign_in(world.analyst)
    key_id = admin.get("/v1/consumers/ana/keys").json()["items"][0]["id"]
    assert admin.delete(f"/v1/consumers/ana/keys/{key_id}").status_code == 200
    assert client.get("/ui/analyst").headers["location"] == "/ui/login"


def test_posts_from_another_origin_are_403(
    server: Service, admin: httpx.Client, sign_in: Callable[[str], httpx.Client], world: World
) -> None:
    signed = sign_in(world.admin)
    before = admin.get("/v1/consumers").json()["items"]
    cases: list[dict[str, str]] = [
        {"Origin": "https://evil.example"},
        {"Origin": "http://testserver.evil.example"},
        {"Origin": "null"},  # without Sec-Fetch-Site: same-origin
        {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
        {"Referer": "https://evil.example/page"},
        {},
    ]
    for headers in cases:
        signed.headers.pop("Origin", None)
        response = signed.post(
            "/ui/admin/consumers", data={"name": "mallory", "role": "admin"}, headers=headers
        )
        assert response.status_code == 403, headers
        assert parse(response.text).texts("*", role="alert"), headers
    assert admin.get("/v1/consumers").json()["items"] == before
    # a login from elsewhere is refused too, and starts no session
    stranger = server.client()
    response = stranger.post(
        "/ui/login", data={"api_key": world.admin}, headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 403
    assert "set-cookie" not in response.headers


def test_same_origin_posts_pass_by_origin_referer_or_fetch_metadata(
    server: Service, world: World
) -> None:
    for headers in (
        {"Origin": "http://testserver"},
        {"Referer": "http://testserver/ui/login"},
        {"Origin": "null", "Sec-Fetch-Site": "same-origin"},  # Referrer-Policy: no-referrer
    ):
        client = server.client()
        response = client.post("/ui/login", data={"api_key": world.analyst}, headers=headers)
        assert response.status_code == 303, headers


def test_the_consoles_refusals_are_plain_exceptions_starlette_can_reset() -> None:
    # Starlette clears a handled exception's traceback after answering; a frozen
    # dataclass exception would fail there (after the 403 went out) on every refusal.
    from api.console.api_client import ApiProblem
    from api.console.guard import NotSignedIn, WrongRole
    from api.console.session import CrossOrigin
    from db.accounts import Principal

    principal = Principal(consumer_id=1, name="ana", role="analyst", key_id="key_1")
    for error in (
        WrongRole(principal, "admin"),
        ApiProblem(409, "t", "d"),
        CrossOrigin("x"),
        NotSignedIn(),
    ):
        error.__traceback__ = None
