"""The console in real headless Chromium: each role signs in and sees its charts and tables,
a budget the admin sets shows on the auditor's page, the analyst previews, runs and reads a
release, and no page asks anything of any other server (every URL the browser requested
is the server's own; anything else is aborted and fails the test), logs an error, breaks
its Content-Security-Policy or has a serious accessibility violation (axe-core).

Each page is screenshotted (see :func:`tests.ui.browser.screenshot`).
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.ui.browser import (
    assert_accessible,
    screenshot,
    sign_in,
    sign_out,
    wait_drawn,
)

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

    from tests.ui.browser import Watch
    from tests.ui.conftest import Console

pytestmark = [pytest.mark.slow, pytest.mark.live, pytest.mark.xdist_group("browser")]


def _choose(field: Locator, value: str) -> None:
    """Select ``value`` in a ``<select>``, or type it into an input."""
    if field.evaluate("e => e.tagName") == "SELECT":
        field.select_option(value)
    else:
        field.fill(value)


def _common(page: Page, h1: str) -> None:
    """What every console page has: lang, title, one h1, main, the Console navigation."""
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.title()
    assert page.locator("h1").count() == 1
    assert page.locator("h1").inner_text().strip() == h1
    assert page.locator("main").count() == 1
    nav = page.get_by_role("navigation", name="Console")
    assert nav.get_by_role("button", name="Sign out").is_visible()


def test_root_redirects_to_the_console(console: Console, page: Page) -> None:
    answer = httpx.get(f"{console.url}/", follow_redirects=False)
    assert answer.status_code == 307
    assert answer.headers["location"].endswith("/ui")
    page.goto(f"{console.url}/")
    page.wait_for_url(f"{console.url}/ui/login")
    page.get_by_label("API key").wait_for()
    assert page.get_by_label("API key").get_attribute("type") == "password"
    assert_accessible(page)
    screenshot(page, console.screenshots, "login")


def test_bad_key_shows_an_alert(console: Console, page: Page) -> None:
    page.goto(f"{console.url}/ui/login")
    page.get_by_label("API key").fill("not-a-key-of-anyone-1234567890")
    with page.expect_response(f"{console.url}/ui/login") as posted:
        page.get_by_role("button", name="Sign in").click()
    assert posted.value.status == 401
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert alert.inner_text().strip()
    assert "not-a-key-of-anyone" not in page.content()
    assert not [c for c in page.context.cookies() if c["name"] == "ruis_session"]
    assert_accessible(page)
    screenshot(page, console.screenshots, "login-error")


def test_auditor_sees_verification_burn_down_timeline_and_checkpoints(
    console: Console, page: Page
) -> None:
    sign_in(page, console.url, console.keys["auditor"], "auditor")
    _common(page, "Auditor")
    for heading in ("Verification", "Budget burn-down", "Ledger timeline", "Checkpoints"):
        assert page.get_by_role("heading", name=heading, level=2).is_visible(), heading
    # the demo's analyst spent on mobility_events (the session's release): one figure each
    name = "Budget burn-down of cbs-mobility on mobility_events"
    wait_drawn(page.get_by_role("img", name=name))
    budget = page.locator(
        "table",
        has=page.locator(
            "caption", has_text=re.compile(r"^\s*Budget of cbs-mobility on mobility_events\s*$")
        ),
    )
    assert budget.count() == 1
    assert budget.locator("tbody tr").count() >= 1
    search = page.get_by_role("search")
    for label in ("Consumer", "Dataset", "Kind", "Since", "Until"):
        assert search.get_by_label(label).count() == 1, label
    entries = page.locator("table", has=page.locator("caption", has_text="Ledger entries"))
    assert entries.locator("tbody tr").count() >= 1
    assert page.locator("table", has=page.locator("caption", has_text="Checkpoint history")).count()
    assert page.locator("pre").count() >= 1
    assert_accessible(page)
    screenshot(page, console.screenshots, "auditor")

    # the timeline's search narrows the entries to one consumer
    search.get_by_label("Consumer").fill("cbs-mobility")
    search.get_by_role("button", name="Search").click()
    page.wait_for_load_state("networkidle")
    rows = entries.locator("tbody tr")
    assert rows.count() >= 1
    assert all("cbs-mobility" in text for text in rows.all_inner_texts())


def test_admin_sees_consumers_datasets_and_budgets(console: Console, page: Page) -> None:
    sign_in(page, console.url, console.keys["admin"], "admin")
    _common(page, "Admin")
    for caption, needle in (
        ("Consumers", "demo-auditor"),
        ("Datasets", "mobility_events"),
        ("Budgets", "cbs-mobility"),
    ):
        table = page.locator("table", has=page.locator("caption", has_text=caption))
        assert needle in table.first.inner_text(), caption
    assert_accessible(page)
    screenshot(page, console.screenshots, "admin")


def test_a_budget_the_admin_sets_shows_on_the_auditors_page(console: Console, page: Page) -> None:
    consumer = f"ui-analyst-{uuid.uuid4().hex[:6]}"
    sign_in(page, console.url, console.keys["admin"], "admin")

    create = page.locator("form", has=page.get_by_role("button", name="Create consumer"))
    create.get_by_label("Name").fill(consumer)
    create.get_by_label("Role").select_option("analyst")
    create.get_by_role("button", name="Create consumer").click()
    issued = page.get_by_role("status").filter(has_text=consumer)
    issued.wait_for()
    consumers = page.locator("table", has=page.locator("caption", has_text="Consumers"))
    consumers.filter(has_text=consumer).wait_for()

    form = page.locator("form", has=page.get_by_role("button", name="Set budget"))
    _choose(form.get_by_label("Consumer"), consumer)
    _choose(form.get_by_label("Dataset"), "mobility_events")
    _choose(form.get_by_label("Privacy model"), "pure")
    form.get_by_label("Epsilon").fill("2.5")
    form.get_by_role("button", name="Set budget").click()
    budgets = page.locator("table", has=page.locator("caption", has_text=re.compile("^Budgets$")))
    row = budgets.locator("tr", has_text=consumer)
    row.wait_for()
    assert "mobility_events" in row.inner_text()
    assert "2.5" in row.inner_text()
    sign_out(page)

    sign_in(page, console.url, console.keys["auditor"], "auditor")
    wait_drawn(page.get_by_role("img", name=f"Budget burn-down of {consumer} on mobility_events"))
    table = page.locator(
        "table", has=page.locator("caption", has_text=f"Budget of {consumer} on mobility_events")
    )
    assert table.count() == 1
    assert "2.5" in table.inner_text()


def test_analyst_previews_runs_and_reads_a_release(console: Console, page: Page) -> None:
    sign_in(page, console.url, console.keys["analyst"], "analyst")
    _common(page, "Analyst")
    mine = page.locator("table", has=page.locator("caption", has_text="Your budgets"))
    assert "mobility_events" in mine.inner_text()
    releases = page.locator("table", has=page.locator("caption", has_text="Your releases"))
    assert releases.locator(f'a[href$="/ui/analyst/releases/{console.release_id}"]').count() == 1
    assert_accessible(page)
    screenshot(page, console.screenshots, "analyst")

    form = page.locator("form", has=page.get_by_role("button", name="Preview"))
    _choose(form.get_by_label("Dataset", exact=True), "mobility_events")
    _choose(form.get_by_label("Statistic"), "unit_count")
    _choose(form.get_by_label("Group by"), "municipality")
    form.get_by_label("Epsilon").fill("0.25")
    form.get_by_role("button", name="Preview").click()
    preview = page.get_by_role("status").filter(has_text=re.compile("0.25"))
    preview.wait_for()
    assert re.search(r"(?i)accuracy|alpha|±", preview.inner_text()), preview.inner_text()

    form.get_by_role("button", name="Run query").click()
    page.wait_for_url(re.compile(r".*/ui/analyst(/releases/[\w-]+)?$"))
    if "/releases/" not in page.url:
        page.locator("table", has=page.locator("caption", has_text="Your releases")).locator(
            "a"
        ).first.click()
        page.wait_for_url(re.compile(r".*/ui/analyst/releases/[\w-]+$"))
    release_id = page.url.rsplit("/", 1)[1]
    assert release_id != console.release_id
    _release_page(page, release_id)


def test_the_release_page_has_values_bounds_and_error_bars(console: Console, page: Page) -> None:
    sign_in(page, console.url, console.keys["analyst"], "analyst")
    page.locator(f'a[href$="/ui/analyst/releases/{console.release_id}"]').click()
    page.wait_for_url(f"{console.url}/ui/analyst/releases/{console.release_id}")
    _release_page(page, console.release_id)
    assert_accessible(page)
    screenshot(page, console.screenshots, "release")


def _release_page(page: Page, release_id: str) -> None:
    _common(page, f"Release {release_id}")
    values = page.locator("table", has=page.locator("caption", has_text="Release values"))
    headers = [h.strip() for h in values.locator("thead th").all_inner_texts()]
    assert {"municipality", "value", "lower", "upper"} <= set(headers), headers
    assert values.locator("tbody tr").count() >= 1
    wait_drawn(page.get_by_role("img", name="Values with error bars"))
    text = page.locator("main").inner_text()
    for needle in ("alpha", "covers", "epsilon"):
        assert re.search(needle, text, re.IGNORECASE), needle


def test_another_roles_page_is_forbidden(console: Console, page: Page) -> None:
    sign_in(page, console.url, console.keys["analyst"], "analyst")
    answer = page.goto(f"{console.url}/ui/admin")
    assert answer is not None and answer.status == 403
    assert "demo-auditor" not in page.content()  # nothing of the admin's page
    assert_accessible(page)
    screenshot(page, console.screenshots, "forbidden")


def test_docs_render_offline(console: Console, page: Page) -> None:
    page.goto(f"{console.url}/docs")
    page.locator(".opblock").first.wait_for()
    assert page.locator(".opblock").count() > 20
    assert page.get_by_text("/v1/queries/preview").first.is_visible()
    screenshot(page, console.screenshots, "docs")


def test_redoc_renders_offline(console: Console, page: Page) -> None:
    page.goto(f"{console.url}/redoc")
    title = page.get_by_role("heading", name=re.compile(r"^Ruis"), level=1)
    title.wait_for(timeout=30_000)
    screenshot(page, console.screenshots, "redoc")


def test_the_watch_catches_a_request_to_another_server(
    console: Console, page: Page, watch: Watch
) -> None:
    """The recorder itself: a request elsewhere is recorded and never leaves the browser."""
    page.set_content('<img alt="" src="https://example.invalid/pixel.png">')  # no CSP here
    page.wait_for_load_state("load")
    assert "https://example.invalid/pixel.png" in watch.blocked
    with pytest.raises(AssertionError, match="left the server"):
        watch.assert_clean()
    watch.reset()
    page.goto(f"{console.url}/ui/login")  # the page fixture checks a clean one afterwards
