"""Every console and docs page: security headers, structure and the accessible names the
browser tests rely on, assets that all resolve on this server, nothing from elsewhere."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest

from api.console.headers import CONSOLE_CSP, DOCS_CSP
from tests.conftest import Service
from tests.console.conftest import World, browser
from tests.console.html import Page, parse
from tests.support.api import VISITORS

URL = re.compile(r"https?://[^\s\"'<>)]+")
OWN_ASSETS = ("console.js", "docs.js", "console.css")


def _pages(
    server: Service, sign_in: Callable[[str], httpx.Client], world: World
) -> dict[str, httpx.Response]:
    """Each page of the console and the docs, as its user sees it."""
    release = server.client(world.analyst).post("/v1/queries", json=VISITORS).json()["id"]
    admin, analyst, auditor = (sign_in(k) for k in (world.admin, world.analyst, world.auditor))
    anonymous = browser(server)
    return {
        "login": anonymous.get("/ui/login"),
        "login failed": anonymous.post("/ui/login", data={"api_key": "ruis_nope"}),
        "admin": admin.get("/ui/admin"),
        "analyst": analyst.get("/ui/analyst"),
        "auditor": auditor.get("/ui/auditor"),
        "release": analyst.get(f"/ui/analyst/releases/{release}"),
        "forbidden": analyst.get("/ui/admin"),
        "docs": anonymous.get("/docs"),
        "redoc": anonymous.get("/redoc"),
    }


@pytest.fixture
def pages(
    server: Service, sign_in: Callable[[str], httpx.Client], world: World
) -> dict[str, httpx.Response]:
    return _pages(server, sign_in, world)


def test_security_headers_on_every_page(pages: dict[str, httpx.Response]) -> None:
    for name, response in pages.items():
        assert response.headers["content-type"].startswith("text/html"), name
        expected = DOCS_CSP if name in ("docs", "redoc") else CONSOLE_CSP
        assert response.headers["content-security-policy"] == expected, name
        assert response.headers["x-content-type-options"] == "nosniff", name
        assert response.headers["referrer-policy"] == "no-referrer", name
        assert response.headers["x-frame-options"] == "DENY", name
    assert "'unsafe-inline'" not in CONSOLE_CSP and "script-src 'self';" in DOCS_CSP


def test_redirects_and_static_files_carry_the_headers_too(server: Service) -> None:
    client = server.client()
    root = client.get("/")
    assert (root.status_code, root.headers["location"]) == (307, "/ui")
    for response in (root, client.get("/ui"), client.get("/ui/static/console.js")):
        assert response.headers["content-security-policy"] == CONSOLE_CSP
    api = client.get("/healthz")
    assert "content-security-policy" not in api.headers
    assert client.get("/openapi.json").status_code == 200


def test_every_page_is_a_well_formed_document(pages: dict[str, httpx.Response]) -> None:
    for name, response in pages.items():
        page = parse(response.text)
        assert page.all("html", lang="en"), name
        assert len(page.texts("title")) == 1 and page.texts("title")[0], name
        assert len(page.all("main")) == 1, name
        if name in ("docs", "redoc"):
            continue
        assert len(page.all("h1")) == 1, name
        assert page.all("nav", aria_label="Console"), name
        signed_in = name not in ("login", "login failed")
        assert ("Sign out" in page.buttons()) is signed_in, name
        htmx = page.all("meta", name="htmx-config")
        assert htmx[0].get("content") == '{"includeIndicatorStyles":false,"allowEval":false}'


def test_no_inline_script_style_or_handler(pages: dict[str, httpx.Response]) -> None:
    for name, response in pages.items():
        page = parse(response.text)
        for script in page.all("script"):
            if script.get("type") == "application/json":
                assert not script.get("src"), name
            else:
                assert script.get("src") and not script.text.strip(), name
        assert not page.all("style"), name
        for element in page.elements:
            assert "style" not in element.attrs, (name, element.tag)
            assert not [a for a in element.attrs if a.startswith("on")], (name, element.tag)
            assert not any(
                v.strip().lower().startswith("javascript:") for v in element.attrs.values()
            )


def _asset_urls(page: Page) -> list[str]:
    urls = [s.get("src") or "" for s in page.all("script") if s.get("src")]
    urls += [link.get("href") or "" for link in page.all("link")]
    urls += [img.get("src") or "" for img in page.all("img")]
    return urls


def test_every_asset_is_same_origin_and_served(
    server: Service, pages: dict[str, httpx.Response]
) -> None:
    client = server.client()
    seen: set[str] = set()
    for name, response in pages.items():
        urls = _asset_urls(parse(response.text))
        assert urls, name
        for url in urls:
            parts = urlsplit(url)
            assert not parts.scheme and not parts.netloc and url.startswith("/ui/static/"), url
            seen.add(url)
    for url in seen:
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert asset.content
    kinds = {urlsplit(u).path.rsplit(".", 1)[-1] for u in seen}
    assert {"js", "css", "svg"} <= kinds


def test_no_url_to_another_host_in_what_we_author(
    server: Service, pages: dict[str, httpx.Response]
) -> None:
    client = server.client()
    documents = {name: r.text for name, r in pages.items()}
    for own in OWN_ASSETS:
        documents[own] = client.get(f"/ui/static/{own}").text
    for name, text in documents.items():
        assert URL.findall(text) == [], name
    # links and form targets stay on this server too
    for name, response in pages.items():
        page = parse(response.text)
        targets = [a.get("href") or "" for a in page.all("a")]
        targets += [f.get("action") or "" for f in page.all("form")]
        targets += [b.get("formaction") or "" for b in page.all("button") if b.get("formaction")]
        assert all(t.startswith(("/", "#")) for t in targets), (name, targets)


def test_auditor_names(pages: dict[str, httpx.Response]) -> None:
    page = parse(pages["auditor"].text)
    assert page.texts("h1") == ["Auditor"]
    assert page.texts("h2") == [
        "Verification",
        "Budget burn-down",
        "Ledger timeline",
        "Checkpoints",
    ]
    assert page.all("canvas", role="img", aria_label="Budget burn-down of ana on events")
    captions = page.texts("caption")
    for caption in ("Budget of ana on events", "Ledger entries", "Checkpoint history"):
        assert caption in captions
    search = page.all("form", role="search")
    assert len(search) == 1
    assert {"Consumer", "Dataset", "Kind", "Since", "Until"} <= set(page.labels())
    assert "Search" in page.buttons()
    assert page.all("pre") and page.texts("pre")[0].startswith("ruis.local/ledger")


def test_admin_names(pages: dict[str, httpx.Response]) -> None:
    page = parse(pages["admin"].text)
    assert page.texts("h1") == ["Admin"]
    assert page.texts("h2") == ["Consumers", "Datasets", "Budgets"]
    assert {"Consumers", "Datasets", "Budgets"} <= set(page.texts("caption"))
    labels = page.labels()
    for label in (
        "Name",
        "Role",
        "Dataset metadata (JSON)",
        "Consumer",
        "Dataset",
        "Privacy model",
        "Epsilon",
        "Rho",
        "Period",
    ):
        assert label in labels, label
    buttons = page.buttons()
    for button in ("Create consumer", "Register dataset", "Set budget"):
        assert button in buttons, button
    assert buttons.count("Issue key") == 3  # one per consumer: bootstrap-admin, ana, aud
    assert len(page.all("*", role="status")) == 1
    models = [o.get("value") for o in page.all("option") if o.get("value") in ("pure", "zcdp")]
    assert models == ["pure", "zcdp"]


def test_analyst_names(pages: dict[str, httpx.Response]) -> None:
    page = parse(pages["analyst"].text)
    assert page.texts("h1") == ["Analyst"]
    assert page.texts("h2") == ["Budgets", "Preview and query", "Releases"]
    assert {"Your budgets", "Your releases"} <= set(page.texts("caption"))
    assert {"Dataset", "Statistic", "Column", "Group by", "Epsilon"} <= set(page.labels())
    assert {"Preview", "Run query"} <= set(page.buttons())
    assert page.all("*", role="status", id="preview-result")
    links = [a.get("href") or "" for a in page.all("a")]
    assert any(re.fullmatch(r"/ui/analyst/releases/rel_\w+", link) for link in links)


def test_release_names(pages: dict[str, httpx.Response]) -> None:
    page = parse(pages["release"].text)
    (title,) = page.texts("h1")
    assert re.fullmatch(r"Release rel_\w+", title)
    assert "Release values" in page.texts("caption")
    assert page.all("canvas", role="img", aria_label="Values with error bars")
    assert page.texts("th", scope="col") == ["municipality", "value", "lower", "upper"]


PLACEHOLDER_LIMIT = 12
"""Characters a placeholder may have: a hint longer than a narrow field is cut, so it goes
into a visible description (aria-describedby) instead."""


def test_placeholders_are_short_and_hints_are_visible_descriptions(
    pages: dict[str, httpx.Response],
) -> None:
    for name, response in pages.items():
        page = parse(response.text)
        ids = {e.get("id") for e in page.all("*") if e.get("id")}
        for field in page.all("input"):
            placeholder = field.get("placeholder") or ""
            assert len(placeholder) <= PLACEHOLDER_LIMIT, (name, placeholder)
            described = field.get("aria-describedby")
            if described:
                assert set(described.split()) <= ids, (name, described)


def test_the_login_form_has_a_hidden_username_for_password_managers(server: Service) -> None:
    page = parse(server.client().get("/ui/login").text)
    (username,) = page.all("input", autocomplete="username")
    assert username.get("id") in {label.get("for") for label in page.all("label")}
    (key,) = page.all("input", type="password")
    assert key.get("autocomplete") == "current-password" and key.get("name") == "api_key"
