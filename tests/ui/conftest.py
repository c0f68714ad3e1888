"""Fixtures of the console's browser tests: one demo-like server and one headless Chromium
for the whole session (of each test process: the suite stays quick), and a fresh page per
test with its :class:`~tests.ui.browser.Watch`.

The server is the demo's own state (``cli.demo.setup`` on small data, 2,000 devices: the
consumers ``demo-admin``, ``cbs-mobility`` (analyst) and ``demo-auditor``, both datasets
and the analyst's budgets) plus one release, served by uvicorn on a free port.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from api.settings import Settings
from cli import demo
from tests.conftest import ADMIN_KEY, RunningServer, require_tool, start_server
from tests.ui.browser import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    CSP_LISTENER,
    ServerErrors,
    Watch,
    screenshot_dir,
)

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page


@dataclass(frozen=True)
class Console:
    """The served demo: its URL, a key per role and one release of the analyst's."""

    server: RunningServer
    keys: dict[str, str]
    """role -> API key"""
    release_id: str
    screenshots: Path

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self.server.url


@pytest.fixture(scope="session")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """The demo's state on a small data set, served over HTTP, with one release made."""
    data_dir = tmp_path_factory.mktemp("console") / "data"
    settings = Settings(
        database_url=f"sqlite:///{data_dir.parent / 'ruis.db'}",
        data_dir=data_dir,
        bootstrap_admin_key=ADMIN_KEY,
    )
    keys, query, _ = demo.setup(settings, argparse.Namespace(devices=2000, days=7, seed=42))
    running = start_server(settings)
    try:
        analyst = running.client(keys[demo.ANALYST])
        # the demo's "visitors last week", per weekday: a release of seven rows to look at
        answer = analyst.post("/v1/queries", json=query | {"group_by": ["weekday"]})
        assert answer.status_code == 200, answer.text
        yield Console(
            server=running,
            keys={
                "admin": keys[demo.ADMIN],
                "analyst": keys[demo.ANALYST],
                "auditor": keys[demo.AUDITOR],
            },
            release_id=answer.json()["id"],
            screenshots=screenshot_dir(tmp_path_factory.mktemp("screenshots")),
        )
    finally:
        running.stop()


@pytest.fixture(scope="session")
def browser_context(console: Console) -> Iterator[BrowserContext]:
    """Debian's headless Chromium with a fresh profile, every request routed through the
    session's :class:`Watch` (see ``watch``)."""
    require_tool(CHROMIUM.exists(), f"Chromium ({CHROMIUM}: scripts/system-deps.sh)")
    require_tool(
        importlib.util.find_spec("playwright") is not None, "Playwright (pip install -e .[dev])"
    )
    from playwright.sync_api import sync_playwright

    with (
        tempfile.TemporaryDirectory(prefix="ruis-chromium-") as profile,
        sync_playwright() as playwright,
    ):
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900},
            locale="en-GB",
            timezone_id="UTC",
        )
        context.set_default_timeout(15_000)
        context.add_init_script(CSP_LISTENER)
        try:
            yield context
        finally:
            context.close()


SERVER_LOGGERS = ("ruis.api", "uvicorn.error")
"""Where the server logs an unhandled exception (the app's handler, uvicorn's)."""


@pytest.fixture(scope="session")
def session_watch(console: Console, browser_context: BrowserContext) -> Iterator[Watch]:
    """The one watch of the session's browser: it routes every request of the context and
    records the errors the server logs."""
    watch = Watch(server=console.url, secrets=list(console.keys.values()))
    browser_context.route("**/*", watch.route)
    handler = ServerErrors(watch)
    for name in SERVER_LOGGERS:
        logging.getLogger(name).addHandler(handler)
    try:
        yield watch
    finally:
        for name in SERVER_LOGGERS:
            logging.getLogger(name).removeHandler(handler)


@pytest.fixture
def watch(session_watch: Watch) -> Watch:
    """The watch, emptied for this test."""
    session_watch.reset()
    return session_watch


@pytest.fixture
def page(browser_context: BrowserContext, watch: Watch) -> Iterator[Page]:
    """A new page, signed out; after the test, every request it made must have stayed on
    the server and no console error or warning may have been logged."""
    browser_context.clear_cookies()
    opened = browser_context.new_page()
    opened.on("request", watch.on_request)
    opened.on("console", watch.on_console)
    opened.on("pageerror", watch.on_page_error)
    yield opened
    opened.close()
    watch.assert_clean()
