"""What the console's browser tests share: headless Chromium as the issue fixes it, a watch
on every request and console message of a page, signing in, axe-core and screenshots.

Chromium is Debian's (``/usr/bin/chromium``, installed by ``scripts/system-deps.sh``),
driven by Playwright for Python; Playwright never downloads a browser here.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:  # Playwright loads only when a browser test runs (tests/ui/conftest.py)
    from playwright.sync_api import ConsoleMessage, Locator, Page, Request, Route

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""Besides a fresh ``--user-data-dir`` (the persistent context's directory, new each run)."""

REPO = Path(__file__).resolve().parents[2]
AXE = REPO / "tests" / "ui" / "vendor" / "axe-core" / "axe.min.js"
SCREENSHOTS = REPO / "docs" / "screenshots"
SCREENSHOT_DIR_ENV = "RUIS_SCREENSHOT_DIR"
"""Where :func:`screenshot` writes (default: a temporary directory of the session):
``RUIS_SCREENSHOT_DIR=docs/screenshots`` refreshes the committed ones."""

MAX_SCREENSHOT_HEIGHT = 2400
"""Pixels: a page longer than that (ReDoc's whole reference, a release of hundreds of
groups) is cut there, so the committed screenshots stay small."""

PAGES = ("login", "login-error", "auditor", "admin", "analyst", "release", "forbidden")
"""The console's pages, each screenshotted and linked from the README."""
SHOTS = (*PAGES, "docs", "redoc")
"""Every screenshot the browser tests take (the console's pages, ``/docs``, ``/redoc``)."""

CSP_LISTENER = """
document.addEventListener('securitypolicyviolation', (event) => {
  console.error('CSP violation: ' + event.violatedDirective + ' blocked ' + event.blockedURI);
});
"""
"""An init script (run by the browser before the page's own, outside its CSP) that turns
every Content-Security-Policy violation into a console error the watch records."""


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class Watch:
    """Everything the pages of one test asked for or complained about.

    ``requests``: every URL the browser requested (pages, assets, XHR, workers);
    ``blocked``: the requests that were not for the server's own origin, aborted before
    they left the browser; ``console``: console errors and warnings, uncaught exceptions
    and CSP violations (see :data:`CSP_LISTENER`).
    """

    server: str
    secrets: list[str] = field(default_factory=list)
    """API keys that must appear in no URL"""
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)
    """errors the server logged meanwhile (an unhandled exception behind a page)"""
    statuses: set[int] = field(default_factory=set)
    """HTTP error statuses this test expects a page to have (the browser logs each as a
    console error "Failed to load resource")"""

    def expect_status(self, status: int) -> None:
        """A page of this test answers ``status`` on purpose (401 sign-in, 403 page)."""
        self.statuses.add(status)

    def local(self, url: str) -> bool:
        """Whether ``url`` stays on the server (or in the page: ``data:`` and ``blob:``)."""
        scheme = urlsplit(url).scheme
        return scheme in ("data", "blob") or origin(url) == self.server

    def route(self, route: Route) -> None:
        """Let requests to the server through; abort and record any other."""
        url = route.request.url
        if self.local(url):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("blockedbyclient")

    def on_request(self, request: Request) -> None:
        """Record a request's URL."""
        self.requests.append(request.url)

    def on_console(self, message: ConsoleMessage) -> None:
        """Record a console error or warning."""
        expected = any(
            message.text.startswith(
                f"Failed to load resource: the server responded with a status of {status} "
            )
            for status in self.statuses
        )
        if message.type in ("error", "warning") and not expected:
            self.console.append(f"{message.type}: {message.text} ({message.location})")

    def on_page_error(self, error: Exception) -> None:
        """Record an uncaught exception of a page's script."""
        self.console.append(f"uncaught: {error}")

    def reset(self) -> None:
        """Forget what the previous test saw."""
        self.requests.clear()
        self.blocked.clear()
        self.console.clear()
        self.server_errors.clear()
        self.statuses.clear()

    def assert_clean(self) -> None:
        """Every request stayed on the server, and no page logged an error or a warning."""
        assert self.requests, "the watch saw no request at all"
        off_site = [url for url in self.requests if not self.local(url)]
        assert not off_site, (
            f"requests left the server: {off_site} (aborted by the watch: {self.blocked}; "
            "console:\n" + "\n".join(self.console) + ")"
        )
        assert not self.blocked, f"requests left the server: {self.blocked}"
        leaked = [url for url in self.requests for key in self.secrets if key in url]
        assert not leaked, f"an API key in a URL: {leaked}"
        assert not self.console, "console errors:\n" + "\n".join(self.console)
        assert not self.server_errors, "server errors:\n" + "\n".join(self.server_errors)


class ServerErrors(logging.Handler):
    """A logging handler that records the server's errors in a :class:`Watch`."""

    def __init__(self, watch: Watch) -> None:
        super().__init__(level=logging.ERROR)
        self.watch = watch

    def emit(self, record: logging.LogRecord) -> None:
        """Record one error (with its exception's text, if any)."""
        self.watch.server_errors.append(
            f"{record.name}: {record.getMessage()} {record.exc_text or record.exc_info or ''}"
        )


def sign_in(page: Page, url: str, key: str, role: str) -> None:
    """Sign in on the login page with ``key`` and land on ``/ui/<role>``; the key is then
    only in the session cookie (HttpOnly, SameSite=Strict, Path=/ui), never in the page or
    a URL."""
    page.goto(f"{url}/ui/login")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/ui/{role}")
    assert key not in page.content()
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "ruis_session"]
    assert cookie["value"] == key
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/ui"
    assert cookie["expires"] == -1  # a session cookie
    assert not cookie["secure"]  # served over plain HTTP here
    assert page.evaluate("() => document.cookie") == ""  # not readable by scripts


def sign_out(page: Page) -> None:
    """Press "Sign out" in the console's navigation and land on the login page, without the
    session cookie."""
    page.get_by_role("navigation", name="Console").get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r".*/ui/login$"))
    assert not [c for c in page.context.cookies() if c["name"] == "ruis_session"]


def field(scope: Locator, label: str) -> Locator:
    """The one form control of ``scope`` whose ``<label>`` reads ``label`` (the label's own
    text, before any control or option text inside it)."""
    labels = scope.locator(f"xpath=.//label[normalize-space(text()[1])='{label}']")
    assert labels.count() == 1, f"{labels.count()} labels {label!r}"
    target = labels.get_attribute("for")
    if target:
        return scope.page.locator(f"#{target}")
    return labels.locator("input, select, textarea")


def choose(control: Locator, value: str) -> None:
    """Select ``value`` in a ``<select>``, or type it into an input."""
    if control.evaluate("e => e.tagName") == "SELECT":
        control.select_option(value)
    else:
        control.fill(value)


def wait_drawn(canvas: Locator) -> None:
    """Wait until a chart has drawn on ``canvas``: a Chart.js chart is attached to it (when
    Chart.js is a global) and some pixel is not transparent."""
    canvas.scroll_into_view_if_needed()
    canvas.wait_for(state="visible")
    canvas.evaluate(
        """async (canvas) => {
          const deadline = Date.now() + 10000;
          for (;;) {
            const chart = window.Chart && window.Chart.getChart ? window.Chart.getChart(canvas)
                                                                : undefined;
            const chartOk = !window.Chart || chart !== undefined;
            const data = canvas.width && canvas.height
              ? canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data
              : [];
            let inked = false;
            for (let i = 3; i < data.length; i += 4) { if (data[i] !== 0) { inked = true; break; } }
            if (chartOk && inked) return true;
            if (Date.now() > deadline) {
              throw new Error(`chart not drawn (Chart: ${chartOk}, ink: ${inked}, `
                              + `${canvas.width}x${canvas.height})`);
            }
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
        }"""
    )


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page (axe is evaluated by the
    test, outside the page's CSP, from the vendored file)."""
    assert AXE.exists(), f"{AXE} is missing: scripts/vendor_assets.py vendors it"
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    found: list[dict[str, Any]] = page.evaluate(
        """async () => {
          const result = await window.axe.run(document, {resultTypes: ['violations']});
          return result.violations.map((v) => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' ')),
          }));
        }"""
    )
    return [v for v in found if v["impact"] in ("serious", "critical")]


def assert_accessible(page: Page, *, upstream: dict[str, str] | None = None) -> None:
    """No serious or critical axe-core violation on the page, except the rules in
    ``upstream`` (rule id -> why: markup of a vendored page we do not write)."""
    violations = [v for v in axe_violations(page) if v["id"] not in (upstream or {})]
    assert not violations, f"axe on {page.url}:\n" + json.dumps(violations, indent=2)


def screenshot_dir(default: Path) -> Path:
    """Where screenshots go: ``$RUIS_SCREENSHOT_DIR`` (relative to the repository) or
    ``default``."""
    chosen = os.environ.get(SCREENSHOT_DIR_ENV)
    path = (REPO / chosen) if chosen else default
    path.mkdir(parents=True, exist_ok=True)
    return path


def screenshot(page: Page, directory: Path, name: str) -> Path:
    """A full-page PNG of ``page`` (its first :data:`MAX_SCREENSHOT_HEIGHT` pixels) as
    ``<directory>/<name>.png``."""
    assert name in SHOTS, f"add {name} to SHOTS (and link it from the README)"
    path = directory / f"{name}.png"
    width, height = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
    )
    clip = {"x": 0, "y": 0, "width": width, "height": min(height, MAX_SCREENSHOT_HEIGHT)}
    page.screenshot(path=str(path), full_page=True, clip=clip, animations="disabled")
    assert path.stat().st_size > 1000, f"{path} is nearly empty"
    return path
