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
    choose,
    field,
    screenshot,
    sign_in,
    sign_out,
    wait_drawn,
)

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

    from tests.ui.browser import Watch
    from tests.ui.conftest import Console

pytestmark = [pytest.mark.slow, pytest.mark.live]

SWAGGER_UI_AXE = {
    "nested-interactive": "Swagger UI's operation summary is a button holding other controls",
    "color-contrast": "Swagger UI's own colours (method badges, version stamp, URLs)",
}
"""axe's serious findings in Swagger UI's markup and styles (``/docs`` only; every console
page and ``/redoc`` have none)."""


def _table(page: Page, caption: str) -> Locator:
    """The one table whose caption is exactly ``caption``."""
    exact = re.compile(rf"^\s*{re.escape(caption)}\s*$")
    table = page.locator("table", has=page.locator("caption", has_text=exact))
    assert table.count() == 1, f"{table.count()} tables captioned {caption!r}"
    closed = table.locator("xpath=ancestor::details[not(@open)][1]/summary")
    if closed.count():  # a chart's data table behind a disclosure: open it, as a reader would
        closed.click()
    return table


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
    key = page.get_by_label("API key")
    assert key.get_attribute("type") == "password"
    assert key.get_attribute("name") == "api_key"
    assert page.locator("h1").count() == 1
    assert_accessible(page)
    screenshot(page, console.screenshots, "login")


def test_a_bad_key_shows_an_alert(console: Console, page: Page, watch: Watch) -> None:
    watch.expect_status(401)
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


def test_the_auditor_sees_verification_burn_down_timeline_and_checkpoints(
    console: Console, page: Page
) -> None:
    sign_in(page, console.url, console.keys["auditor"], "auditor")
    _common(page, "Auditor")
    for heading in ("Verification", "Budget burn-down", "Ledger timeline", "Checkpoints"):
        assert page.get_by_role("heading", name=heading, level=2).is_visible(), heading
    verification = page.locator("section", has=page.get_by_role("heading", name="Verification"))
    assert "valid" in verification.inner_text().lower()
    # the demo's analyst spent on mobility_events (the session's release): a figure of it
    figure = page.locator(
        "figure",
        has=page.get_by_role("img", name="Budget burn-down of cbs-mobility on mobility_events"),
    )
    wait_drawn(figure.get_by_role("img"))
    budget = _table(page, "Budget of cbs-mobility on mobility_events")
    assert budget.locator("tbody tr").count() >= 1
    assert "0.5" in budget.inner_text()  # the session's release spent ε = 0.5
    search = page.get_by_role("search")
    for label in ("Consumer", "Dataset", "Kind", "Since", "Until"):
        assert field(search, label).count() == 1, label
    entries = _table(page, "Ledger entries")
    assert entries.locator("tbody tr").count() >= 1
    assert _table(page, "Checkpoint history").count() == 1
    assert "ruis.local/ledger" in page.locator("pre").first.inner_text()  # a signed note
    assert_accessible(page)
    screenshot(page, console.screenshots, "auditor")

    # the timeline's search (htmx) narrows the entries to one kind
    choose(field(search, "Kind"), "release")
    with page.expect_response(re.compile(r".*/ui/auditor/ledger\?.*kind=release.*")):
        search.get_by_role("button", name="Search").click()
    kinds = _table(page, "Ledger entries").locator("tbody tr td:nth-child(3)").all_inner_texts()
    assert kinds and set(kinds) == {"release"}, kinds


def test_the_ledger_timeline_pages_to_older_entries(console: Console, page: Page) -> None:
    admin = console.server.client(console.keys["admin"])
    for _ in range(60):  # more entries than one page of the timeline
        assert admin.post("/v1/consumers/demo-admin/keys").status_code == 201
    sign_in(page, console.url, console.keys["auditor"], "auditor")
    entries = _table(page, "Ledger entries")

    def seqs() -> list[int]:
        return [int(s) for s in entries.locator("tbody tr td:nth-child(1)").all_inner_texts()]

    newest = seqs()
    assert newest == sorted(newest, reverse=True)
    with page.expect_response(re.compile(r".*/ui/auditor/ledger\?.*cursor=.*")):
        page.get_by_role("link", name="Older").click()
    older = seqs()
    assert older and max(older) < min(newest), (newest, older)


def test_the_admin_sees_consumers_datasets_and_budgets(console: Console, page: Page) -> None:
    sign_in(page, console.url, console.keys["admin"], "admin")
    _common(page, "Admin")
    for heading in ("Consumers", "Datasets", "Budgets"):
        assert page.get_by_role("heading", name=heading, level=2).is_visible(), heading
    assert "demo-auditor" in _table(page, "Consumers").inner_text()
    assert "mobility_events" in _table(page, "Datasets").inner_text()
    assert "cbs-mobility" in _table(page, "Budgets").inner_text()
    assert page.get_by_label("Dataset metadata (JSON)").count() == 1
    assert page.get_by_role("button", name="Register dataset").count() == 1
    assert page.get_by_role("button", name="Issue key").count() >= 3
    assert_accessible(page)
    screenshot(page, console.screenshots, "admin")

    # a new key for the auditor, shown once, signs in as the auditor
    consumers = _table(page, "Consumers")
    consumers.locator("tr", has_text="demo-auditor").get_by_role("button", name="Issue key").click()
    issued = page.get_by_role("status").filter(has_text="demo-auditor").locator("code")
    issued.wait_for()
    key = issued.inner_text().strip()
    assert key != console.keys["auditor"]
    sign_out(page)
    sign_in(page, console.url, key, "auditor")


def test_a_budget_the_admin_sets_shows_on_the_auditors_page(console: Console, page: Page) -> None:
    consumer = f"ui-analyst-{uuid.uuid4().hex[:6]}"
    sign_in(page, console.url, console.keys["admin"], "admin")

    create = page.locator("form", has=page.get_by_role("button", name="Create consumer"))
    field(create, "Name").fill(consumer)
    choose(field(create, "Role"), "analyst")
    create.get_by_role("button", name="Create consumer").click()
    issued = page.get_by_role("status").filter(has_text=consumer).locator("code")
    issued.wait_for()
    new_key = issued.inner_text().strip()
    assert len(new_key) >= 20
    assert consumer in _table(page, "Consumers").inner_text()

    form = page.locator("form", has=page.get_by_role("button", name="Set budget"))
    choose(field(form, "Consumer"), consumer)
    choose(field(form, "Dataset"), "mobility_events")
    choose(field(form, "Privacy model"), "pure")
    field(form, "Epsilon").fill("2.5")
    form.get_by_role("button", name="Set budget").click()
    page.wait_for_load_state("load")
    row = _table(page, "Budgets").locator("tr", has_text=consumer)
    row.wait_for()
    assert "mobility_events" in row.inner_text()
    assert "2.5" in row.inner_text()
    sign_out(page)

    sign_in(page, console.url, console.keys["auditor"], "auditor")
    wait_drawn(page.get_by_role("img", name=f"Budget burn-down of {consumer} on mobility_events"))
    assert "2.5" in _table(page, f"Budget of {consumer} on mobility_events").inner_text()
    sign_out(page)

    # the key shown once is the new analyst's, with that budget
    sign_in(page, console.url, new_key, "analyst")
    assert "2.5" in _table(page, "Your budgets").inner_text()


def test_the_analyst_previews_runs_and_reads_a_release(console: Console, page: Page) -> None:
    sign_in(page, console.url, console.keys["analyst"], "analyst")
    _common(page, "Analyst")
    assert "mobility_events" in _table(page, "Your budgets").inner_text()
    releases = _table(page, "Your releases")
    assert releases.locator(f'a[href$="/ui/analyst/releases/{console.release_id}"]').count() == 1
    form = page.locator("form", has=page.get_by_role("button", name="Preview"))
    choose(field(form, "Dataset"), "mobility_events")
    choose(field(form, "Statistic"), "unit_count")
    field(form, "Group by").fill("municipality")
    field(form, "Epsilon").fill("0.25")
    assert field(form, "Column").count() == 1
    form.get_by_role("button", name="Preview").click()
    preview = page.get_by_role("status").filter(has_text="0.25")
    preview.wait_for()
    text = preview.inner_text()
    assert "nothing spent" in text and "alpha" in text and "covers" in text, text
    assert page.url == f"{console.url}/ui/analyst"  # htmx: the page stayed
    assert_accessible(page)
    screenshot(page, console.screenshots, "analyst")  # with the preview

    form.get_by_role("button", name="Run query").click()
    page.wait_for_url(re.compile(r".*/ui/analyst/releases/[\w-]+$"))
    release_id = page.url.rsplit("/", 1)[1]
    assert release_id != console.release_id
    _release_page(page, release_id, ["municipality"], "ε = 0.25")


def test_the_release_page_has_values_bounds_and_error_bars(console: Console, page: Page) -> None:
    sign_in(page, console.url, console.keys["analyst"], "analyst")
    page.locator(f'a[href$="/ui/analyst/releases/{console.release_id}"]').click()
    page.wait_for_url(f"{console.url}/ui/analyst/releases/{console.release_id}")
    _release_page(page, console.release_id, ["weekday"], "ε = 0.5")
    assert_accessible(page)
    screenshot(page, console.screenshots, "release")


def _release_page(page: Page, release_id: str, groups: list[str], cost: str) -> None:
    """The release page: the values with their bounds in a table and a chart, the accuracy
    and the cost."""
    _common(page, f"Release {release_id}")
    values = _table(page, "Release values")
    headers = [h.strip() for h in values.locator("thead th").all_inner_texts()]
    assert headers == [*groups, "value", "lower", "upper"], headers
    cells = values.locator("tbody tr").first.locator("td").all_inner_texts()
    value, lower, upper = (float(c) for c in cells[len(groups) :])
    assert lower <= value <= upper
    wait_drawn(page.get_by_role("img", name="Values with error bars"))
    text = page.locator("main").inner_text()
    for needle in ("alpha", "Covers", cost):
        assert needle in text, needle


def test_a_form_posted_from_another_site_changes_nothing(
    console: Console, page: Page, watch: Watch
) -> None:
    """Cross-site request forgery: signed in as the admin, a page elsewhere posts the
    console's budget form; the browser leaves the SameSite=Strict cookie out, and the Origin
    check refuses it anyway."""
    watch.expect_status(403)
    sign_in(page, console.url, console.keys["admin"], "admin")
    page.goto("about:blank")
    page.set_content(
        f'<form method="post" action="{console.url}/ui/admin/budgets">'
        '<input name="consumer" value="cbs-mobility"><input name="dataset" value="residents">'
        '<input name="model" value="pure"><input name="epsilon" value="1000">'
        "<button>Go</button></form>"
    )
    with page.expect_response(f"{console.url}/ui/admin/budgets") as posted:
        page.get_by_role("button", name="Go").click()
    assert posted.value.status == 403
    budgets = console.server.client(console.keys["admin"]).get(
        "/v1/budgets", params={"consumer": "cbs-mobility", "dataset": "residents"}
    )
    assert budgets.status_code == 200, budgets.text
    assert [b["total"] for b in budgets.json()["items"]] == [10]


def test_another_roles_page_is_forbidden(console: Console, page: Page, watch: Watch) -> None:
    watch.expect_status(403)
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
    assert page.get_by_text("/v1/queries/preview", exact=True).first.is_visible()
    assert_accessible(page, upstream=SWAGGER_UI_AXE)
    screenshot(page, console.screenshots, "docs")


def test_redoc_renders_offline(console: Console, page: Page) -> None:
    page.goto(f"{console.url}/redoc")
    page.get_by_role("heading", name=re.compile(r"^Ruis"), level=1).wait_for(timeout=30_000)
    assert_accessible(page)
    screenshot(page, console.screenshots, "redoc")


def test_the_watch_catches_a_request_to_another_server(
    console: Console, page: Page, watch: Watch
) -> None:
    """The recorder itself: a request elsewhere is recorded and never leaves the browser."""
    page.set_content('<img alt="" src="https://example.invalid/pixel.png">')  # no CSP here
    assert "https://example.invalid/pixel.png" in watch.blocked
    with pytest.raises(AssertionError, match="left the server"):
        watch.assert_clean()
    watch.reset()
    page.goto(f"{console.url}/ui/login")  # the page fixture checks a clean one afterwards


def test_the_analyst_runs_the_readme_query_with_where_json(
    console: Console, page: Page, watch: Watch
) -> None:
    watch.expect_status(422)
    sign_in(page, console.url, console.keys["analyst"], "analyst")
    form = page.locator("form", has=page.get_by_role("button", name="Preview"))
    choose(field(form, "Dataset"), "mobility_events")
    choose(field(form, "Statistic"), "unit_count")
    field(form, "Group by").fill("municipality")
    field(form, "Epsilon").fill("0.05")
    where = field(form, "Where (JSON)")
    where.fill("[{not json")
    form.get_by_role("button", name="Run query").click()
    page.get_by_role("alert").filter(has_text="Where (JSON)").wait_for()
    assert field(form, "Where (JSON)").input_value() == "[{not json"  # kept to correct
    field(form, "Where (JSON)").fill(
        '[{"column": "day", "op": "between", "value": ["2026-03-01", "2026-03-07"]}]'
    )
    form.get_by_role("button", name="Run query").click()
    page.wait_for_url(re.compile(r".*/ui/analyst/releases/[\w-]+$"))
    assert_accessible(page)
