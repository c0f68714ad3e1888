"""What the console's forms do reaches the API (and the ledger), and what its pages show
is what the API answers."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import Service
from tests.console.conftest import World
from tests.console.html import parse
from tests.factories import events_metadata, write_events
from tests.support.api import VISITORS, create_consumer

QUERY_FORM = {
    "dataset": "events",
    "statistic": "unit_count",
    "column": "",
    "group_by": "municipality",
    "epsilon": "0.25",
}


def _entries(api: httpx.Client, **filters: str) -> list[dict[str, object]]:
    items: list[dict[str, object]] = api.get(
        "/v1/ledger", params={**filters, "limit": 1000}
    ).json()["items"]
    return items


def _status_texts(html: str) -> list[str]:
    return parse(html).texts("*", role="status")


def _new_key(html: str) -> str:
    """The key shown once, in the page's "New API key" status region."""
    (region,) = parse(html).all("*", role="status")
    (article,) = [c for c in region.children if c.tag == "article"]
    (code,) = next(c for c in article.children if c.tag == "pre").children
    return code.text.strip()


def test_admin_creates_a_consumer_whose_key_works_once_shown(
    server: Service, admin: httpx.Client, sign_in: Callable[[str], httpx.Client], world: World
) -> None:
    console = sign_in(world.admin)
    response = console.post("/ui/admin/consumers", data={"name": "carol", "role": "analyst"})
    assert response.status_code == 200
    key = _new_key(response.text)
    assert key.startswith("ruis_")
    assert server.client(key).get("/v1/budgets").status_code == 200
    created = _entries(admin, kind="consumer_created", consumer="carol")
    assert len(created) == 1 and created[0]["actor"] == "bootstrap-admin"
    assert key not in console.get("/ui/admin").text  # shown once, not again


def test_admin_issues_a_key(
    server: Service, sign_in: Callable[[str], httpx.Client], world: World
) -> None:
    console = sign_in(world.admin)
    response = console.post("/ui/admin/keys", data={"consumer": "ana"})
    assert response.status_code == 200
    key = _new_key(response.text)
    assert key != world.analyst
    assert server.client(key).get("/v1/budgets").json()["items"][0]["consumer"] == "ana"


def test_admin_sets_a_budget_the_auditor_then_sees(
    server: Service, admin: httpx.Client, sign_in: Callable[[str], httpx.Client], world: World
) -> None:
    create_consumer(admin, "dave")
    console = sign_in(world.admin)
    form = {
        "consumer": "dave",
        "dataset": "events",
        "model": "pure",
        "epsilon": "2.5",
        "rho": "",
        "period": "",
        "period_column": "",
    }
    response = console.post("/ui/admin/budgets", data=form)
    assert response.status_code == 200
    assert any("dave on events" in t for t in _status_texts(response.text))
    (budget,) = admin.get("/v1/budgets", params={"consumer": "dave"}).json()["items"]
    assert (budget["total"], budget["spent"], budget["unit"]) == (2.5, 0.0, "epsilon")
    (entry,) = _entries(admin, kind="budget_set", consumer="dave")
    assert entry["dataset"] == "events"
    assert entry["request_id"] == response.headers["x-request-id"]  # the console's request
    page = parse(sign_in(world.auditor).get("/ui/auditor").text)
    assert "Budget of dave on events" in page.texts("caption")
    assert page.all("canvas", aria_label="Budget burn-down of dave on events")


def test_admin_sets_a_zcdp_budget_per_period(
    admin: httpx.Client, sign_in: Callable[[str], httpx.Client], world: World
) -> None:
    create_consumer(admin, "erin")
    form = {
        "consumer": "erin",
        "dataset": "events",
        "model": "zcdp",
        "epsilon": "",
        "rho": "0.05",
        "period": "day",
        "period_column": "day",
    }
    assert sign_in(world.admin).post("/ui/admin/budgets", data=form).status_code == 200
    (budget,) = admin.get("/v1/budgets", params={"consumer": "erin"}).json()["items"]
    assert (budget["model"], budget["total"]) == ("zcdp", 0.05)
    assert budget["period"] == {"column": "day", "every": "day"}


def test_a_refused_change_shows_the_apis_problem(
    admin: httpx.Client, sign_in: Callable[[str], httpx.Client], world: World
) -> None:
    console = sign_in(world.admin)
    form = {"consumer": "ana", "dataset": "events", "model": "pure", "epsilon": "-1"}
    response = console.post("/ui/admin/budgets", data=form)
    assert response.status_code == 422
    (alert,) = parse(response.text).texts("*", role="alert")
    assert alert.startswith("Set budget: Invalid request")
    assert admin.get("/v1/budgets").json()["items"][0]["total"] == 1.0
    duplicate = console.post("/ui/admin/consumers", data={"name": "ana", "role": "analyst"})
    assert duplicate.status_code == 409
    assert parse(duplicate.text).texts("*", role="alert")[0].startswith("Create consumer:")


def test_admin_registers_a_dataset(
    server: Service, admin: httpx.Client, sign_in: Callable[[str], httpx.Client], world: World
) -> None:
    write_events(server.settings.data_dir, name="events2.parquet")
    metadata = events_metadata(name="events2", path="events2.parquet")
    console = sign_in(world.admin)
    response = console.post("/ui/admin/datasets", data={"metadata": json.dumps(metadata)})
    assert response.status_code == 201 or response.status_code == 200
    assert admin.get("/v1/datasets/events2").status_code == 200
    assert "events2" in parse(response.text).texts("td")
    bad = console.post("/ui/admin/datasets", data={"metadata": "{not json"})
    assert bad.status_code == 422
    assert parse(bad.text).texts("*", role="alert")[0].startswith("Register dataset: Invalid JSON")


@pytest.mark.parametrize("htmx", [True, False])
def test_analyst_previews_without_spending(
    server: Service, sign_in: Callable[[str], httpx.Client], world: World, htmx: bool
) -> None:
    console = sign_in(world.analyst)
    headers = {"HX-Request": "true"} if htmx else {}
    response = console.post("/ui/analyst/preview", data=QUERY_FORM, headers=headers)
    assert response.status_code == 200
    api = server.client(world.analyst)
    expected = api.post(
        "/v1/queries/preview",
        json={**VISITORS, "privacy": {"epsilon": 0.25}},
    ).json()
    html = response.text
    page = parse(html)
    assert bool(page.all("html")) is not htmx  # htmx gets the result alone
    text = " ".join(page.texts("dd"))
    assert "ε = 0.25" in text
    assert f"± {expected['accuracy']['error_bound']:.4g}" in text
    assert api.get("/v1/budgets").json()["items"][0]["spent"] == 0.0


def test_a_bad_preview_is_an_alert_in_the_region(
    sign_in: Callable[[str], httpx.Client], world: World
) -> None:
    console = sign_in(world.analyst)
    form = {**QUERY_FORM, "column": "nope", "statistic": "sum"}
    response = console.post("/ui/analyst/preview", data=form, headers={"HX-Request": "true"})
    assert response.status_code == 200  # htmx swaps only 2xx answers
    assert parse(response.text).texts("*", role="alert")[0].startswith("Preview: Invalid query")


def test_analyst_runs_a_query_and_reads_its_release(
    server: Service, sign_in: Callable[[str], httpx.Client], world: World
) -> None:
    console = sign_in(world.analyst)
    response = console.post("/ui/analyst/query", data=QUERY_FORM)
    assert response.status_code == 303
    location = response.headers["location"]
    release_id = re.fullmatch(r"/ui/analyst/releases/(rel_\w+)", location).group(1)  # type: ignore[union-attr]
    api = server.client(world.analyst)
    assert api.get("/v1/budgets").json()["items"][0]["spent"] == 0.25
    release = api.get(f"/v1/queries/{release_id}").json()
    page = parse(console.get(location).text)
    assert page.texts("h1") == [f"Release {release_id}"]
    rows = [r for r in page.all("tr") if r.children and r.children[0].tag == "td"]
    assert len(rows) == len(release["rows"]) == 6
    bound = release["accuracy"]
    for row, (group, value) in zip(rows, release["rows"], strict=True):
        cells = [" ".join(c.text.split()) for c in row.children]
        assert cells[0] == group
        assert float(cells[1]) == pytest.approx(value, rel=1e-5)
        if bound["covers"] == "noise_and_bias":
            low = value - bound["noise_error_bound"]
            high = value + bound["noise_error_bound"] + bound["bias_bound"]
        else:
            low, high = value - bound["error_bound"], value + bound["error_bound"]
        assert float(cells[2]) == pytest.approx(low, rel=1e-5, abs=1e-3)
        assert float(cells[3]) == pytest.approx(high, rel=1e-5, abs=1e-3)
    (data,) = [s for s in page.all("script") if s.get("id") == "release-chart"]
    chart = json.loads(data.text)
    assert chart["values"] == [v for _, v in release["rows"]]
    analyst_page = parse(console.get("/ui/analyst").text)
    assert location in [a.get("href") for a in analyst_page.all("a")]


def test_mean_release_uses_its_own_intervals(
    server: Service, sign_in: Callable[[str], httpx.Client], world: World
) -> None:
    console = sign_in(world.analyst)
    form = {**QUERY_FORM, "statistic": "mean", "column": "dwell_minutes", "group_by": "day"}
    location = console.post("/ui/analyst/query", data=form).headers["location"]
    release = server.client(world.analyst).get("/v1/queries/" + location.rsplit("/", 1)[1]).json()
    assert release["columns"] == ["day", "value", "lower", "upper"]
    page = parse(console.get(location).text)
    assert page.texts("th", scope="col") == ["day", "value", "lower", "upper"]
    rows = [r for r in page.all("tr") if r.children and r.children[0].tag == "td"]
    for row, (_, value, lower, upper) in zip(rows, release["rows"], strict=True):
        cells = [float(" ".join(c.text.split())) for c in row.children[1:]]
        assert cells == pytest.approx([value, lower, upper], rel=1e-5)


def test_a_query_over_budget_is_refused_with_the_apis_problem(
    server: Service, sign_in: Callable[[str], httpx.Client], world: World
) -> None:
    console = sign_in(world.analyst)
    response = console.post("/ui/analyst/query", data={**QUERY_FORM, "epsilon": "5"})
    assert response.status_code == 409
    (alert,) = parse(response.text).texts("*", role="alert")
    assert alert.startswith("Run query:")
    assert server.client(world.analyst).get("/v1/budgets").json()["items"][0]["spent"] == 0.0


def test_another_analysts_release_is_not_shown(
    server: Service, admin: httpx.Client, sign_in: Callable[[str], httpx.Client], world: World
) -> None:
    release_id = server.client(world.analyst).post("/v1/queries", json=VISITORS).json()["id"]
    other = create_consumer(admin, "frank")
    response = sign_in(other).get(f"/ui/analyst/releases/{release_id}")
    assert response.status_code == 404
    assert parse(response.text).texts("*", role="alert")
    assert "GM0014" not in response.text


def test_auditor_sees_verification_and_burn_down(
    server: Service, admin: httpx.Client, sign_in: Callable[[str], httpx.Client], world: World
) -> None:
    api = server.client(world.analyst)
    costs = [0.1, 0.25, 0.2]
    for epsilon in costs:
        assert (
            api.post("/v1/queries", json={**VISITORS, "privacy": {"epsilon": epsilon}}).status_code
            == 200
        )
    html = sign_in(world.auditor).get("/ui/auditor").text
    page = parse(html)
    verification = admin.get("/v1/ledger/verify").json()
    verdict = page.texts("p", **{"class": "verdict ok"})
    assert verdict == [f"The ledger is valid: {verification['entries']} entries."]
    (block,) = [s for s in page.all("script") if s.get("id") == "burn-ana-events"]
    chart = json.loads(block.text)
    remaining = [1.0, 0.9, 0.65, 0.45]
    assert chart["series"][0]["values"] == pytest.approx(remaining)
    assert chart["total"] == 1.0 and chart["unit"] == "epsilon"
    (table,) = [t for t in page.all("table") if "Budget of ana on events" in t.text]
    rows = next(r for r in table.children if r.tag == "tbody").children
    assert [float(r.children[-1].text) for r in rows] == pytest.approx(remaining)
    assert "Checkpoint history" in page.texts("caption")


def test_auditor_sees_a_broken_ledger(
    server: Service, sign_in: Callable[[str], httpx.Client], world: World
) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(server.settings.database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE ledger SET actor = 'mallory' WHERE seq = 3"))
    engine.dispose()
    page = parse(sign_in(world.auditor).get("/ui/auditor").text)
    (verdict,) = page.texts("p", **{"class": "verdict bad"})
    assert verdict.startswith("The ledger is NOT valid") and "first bad seq 3" in verdict


def test_ledger_timeline_filters_and_pages_newest_first(
    admin: httpx.Client, sign_in: Callable[[str], httpx.Client], world: World
) -> None:
    for index in range(30):  # two entries each: consumer_created, key_issued
        create_consumer(admin, f"c{index:02d}")
    console = sign_in(world.auditor)
    every = _entries(admin)
    page = parse(console.get("/ui/auditor").text)

    def seqs(page_html: str) -> list[int]:
        found = parse(page_html)
        (table,) = [t for t in found.all("table") if "Ledger entries" in t.text]
        body = next(c for c in table.children if c.tag == "tbody")
        return [int(r.children[0].text) for r in body.children]

    newest = [int(e["seq"]) for e in every][::-1]  # type: ignore[call-overload]
    first = seqs(console.get("/ui/auditor").text)
    assert first == newest[:50]
    (older,) = [a for a in page.all("a") if a.text.strip() == "Older"]
    second = console.get(older.get("href") or "", headers={"HX-Request": "true"})
    assert seqs(second.text) == newest[50:100]
    partial = console.get("/ui/auditor/ledger", params={"kind": "budget_set"})
    assert [int(e["seq"]) for e in _entries(admin, kind="budget_set")][::-1] == seqs(partial.text)  # type: ignore[call-overload]
    filtered = console.get("/ui/auditor", params={"consumer": "c07"})
    assert len(seqs(filtered.text)) == 2
    bad = parse(console.get("/ui/auditor/ledger", params={"since": "not a time"}).text)
    assert bad.texts("*", role="alert")[0].startswith("Invalid request")


def test_a_quantile_release_states_no_interval_in_the_values_units(
    sign_in: Callable[[str], httpx.Client], world: World
) -> None:
    console = sign_in(world.analyst)
    form = {
        **QUERY_FORM,
        "statistic": "quantile",
        "column": "dwell_minutes",
        "q": "0.5",
        "group_by": "day",
    }
    response = console.post("/ui/analyst/query", data=form)
    assert response.status_code == 303, parse(response.text).texts("*", role="alert")
    page = parse(console.get(response.headers["location"]).text)
    rows = [r for r in page.all("tr") if r.children and r.children[0].tag == "td"]
    assert len(rows) == 4
    for row in rows:
        cells = [" ".join(c.text.split()) for c in row.children]
        float(cells[1])
        assert cells[2:] == ["—", "—"]  # a rank error bound is in rows, not minutes
    assert any("rank error bound" in text for text in page.texts("dd"))


def test_checkpoint_history_is_newest_first_and_includes_the_current_one(
    server: Service, admin: httpx.Client, sign_in: Callable[[str], httpx.Client], world: World
) -> None:
    console = sign_in(world.auditor)
    console.get("/ui/auditor")  # serves a checkpoint at this size
    create_consumer(admin, "gina")  # the ledger grows: the next page serves a new one
    page = parse(console.get("/ui/auditor").text)
    (current,) = page.all("pre")
    size = int(current.text.strip().splitlines()[1])  # C2SP note: origin, size, root hash
    (table,) = [t for t in page.all("table") if "Checkpoint history" in t.text]
    body = next(c for c in table.children if c.tag == "tbody")
    sizes = [int(r.children[0].text) for r in body.children]
    listed = admin.get("/v1/ledger/checkpoints").json()["items"]
    assert sizes == [int(c["size"]) for c in listed]  # as the API lists them
    assert sizes[0] == size and sizes == sorted(sizes, reverse=True) and len(sizes) >= 2


def _value(page_html: str, name: str) -> str | None:
    """The value a form field named ``name`` shows: an input's value, a textarea's text,
    a select's selected option."""
    page = parse(page_html)
    for element in page.all("input", name=name):
        if element.get("type") != "hidden":
            return element.get("value")
    for element in page.all("textarea", name=name):
        return element.text
    for element in page.all("select", name=name):
        chosen = [o for o in element.children if o.tag == "option" and o.get("selected") == ""]
        return chosen[0].get("value") if chosen else None
    return None


def test_a_refused_form_keeps_the_values_submitted(
    admin: httpx.Client, sign_in: Callable[[str], httpx.Client], world: World
) -> None:
    create_consumer(admin, "hal")
    console = sign_in(world.admin)
    form = {
        "consumer": "hal",
        "dataset": "events",
        "model": "zcdp",
        "epsilon": "",
        "rho": "-0.5",
        "period": "week",
        "period_column": "day",
    }
    response = console.post("/ui/admin/budgets", data=form)
    assert response.status_code == 422
    for name, value in form.items():
        if value:
            assert _value(response.text, name) == value, name
    assert _value(response.text, "name") == ""  # another form: not filled in
    bad = console.post("/ui/admin/datasets", data={"metadata": '{"name": "x",'})
    assert _value(bad.text, "metadata") == '{"name": "x",'
    analyst = sign_in(world.analyst)
    query = {**QUERY_FORM, "statistic": "sum", "column": "nope", "epsilon": "0.3"}
    refused = analyst.post("/ui/analyst/preview", data=query)
    assert refused.status_code == 422
    for name in ("statistic", "column", "group_by", "epsilon"):
        assert _value(refused.text, name) == query[name], name
    login = analyst.post("/ui/login", data={"api_key": world.analyst + "x"})
    assert login.status_code == 401 and world.analyst not in login.text  # never the key


@pytest.mark.parametrize(
    ("role", "path", "page"),
    [
        ("admin", "/ui/admin/consumers", "/ui/admin"),
        ("admin", "/ui/admin/keys", "/ui/admin"),
        ("admin", "/ui/admin/datasets", "/ui/admin"),
        ("admin", "/ui/admin/budgets", "/ui/admin"),
        ("analyst", "/ui/analyst/preview", "/ui/analyst"),
        ("analyst", "/ui/analyst/query", "/ui/analyst"),
        ("analyst", "/ui/logout", "/ui"),
    ],
)
def test_a_form_address_reloaded_goes_to_the_roles_page(
    sign_in: Callable[[str], httpx.Client], world: World, role: str, path: str, page: str
) -> None:
    console = sign_in(getattr(world, role))
    response = console.get(path)
    assert response.status_code == 303
    assert response.headers["location"] == page
    assert console.get(path, follow_redirects=True).status_code == 200


README_WHERE = '[{"column": "day", "op": "between", "value": ["2026-03-01", "2026-03-02"]}]'


def test_the_query_form_filters_with_where_json(
    server: Service, sign_in: Callable[[str], httpx.Client], world: World
) -> None:
    console = sign_in(world.analyst)
    form = {**QUERY_FORM, "group_by": "day", "where": README_WHERE}
    preview = console.post("/ui/analyst/preview", data=form, headers={"HX-Request": "true"})
    assert not parse(preview.text).texts("*", role="alert")
    response = console.post("/ui/analyst/query", data=form)
    assert response.status_code == 303, parse(response.text).texts("*", role="alert")
    release_id = response.headers["location"].rsplit("/", 1)[1]
    release = server.client(world.analyst).get(f"/v1/queries/{release_id}").json()
    assert release["query"]["where"] == json.loads(README_WHERE)


@pytest.mark.parametrize("where", ["[{not json", '{"column": "day"}'])
def test_a_where_that_is_not_a_json_list_is_an_alert_and_spends_nothing(
    server: Service,
    admin: httpx.Client,
    sign_in: Callable[[str], httpx.Client],
    world: World,
    where: str,
) -> None:
    console = sign_in(world.analyst)
    before = len(_entries(admin))
    form = {**QUERY_FORM, "where": where}
    response = console.post("/ui/analyst/query", data=form)
    assert response.status_code == 422
    (alert,) = parse(response.text).texts("*", role="alert")
    assert alert.startswith("Run query: Invalid JSON: Where (JSON)")
    assert _value(response.text, "where") == where  # kept, to be corrected
    region = console.post("/ui/analyst/preview", data=form, headers={"HX-Request": "true"})
    assert parse(region.text).texts("*", role="alert")[0].startswith("Preview: Invalid JSON")
    assert len(_entries(admin)) == before  # no request reached the API
    assert server.client(world.analyst).get("/v1/budgets").json()["items"][0]["spent"] == 0.0


def test_the_release_page_explains_chosen_bounds_kept_share_and_the_error_split(
    server: Service, sign_in: Callable[[str], httpx.Client], world: World
) -> None:
    body = {**VISITORS, "max_partitions_contributed": "auto"}
    api = server.client(world.analyst)
    assert (
        api.post("/v1/queries/preview", json=body).json()["bounds"]["max_partitions_contributed"]
        == "auto"
    )
    release = api.post("/v1/queries", json=body).json()
    page = parse(sign_in(world.analyst).get(f"/ui/analyst/releases/{release['id']}").text)
    facts = dict(zip(page.texts("dt"), page.texts("dd"), strict=True))
    chosen = release["bounds_chosen"]
    assert facts["Bounds chosen"].startswith(
        f"k = {chosen['max_partitions_contributed']} groups per unit, "
        f"c = {chosen['max_contributions_per_partition']} rows"
    )
    kept = release["truncation"]
    assert facts["Kept"].startswith(
        f"{100 * kept['kept_share']:.1f}% ± {100 * kept['kept_share_error_bound']:.1f}%"
    )
    a = release["accuracy"]
    assert facts["Error split"].startswith(
        f"± {a['noise_error_bound']:.4g} from the noise, plus up to {a['bias_bound']:.4g}"
    )


def test_a_preview_with_an_auto_bound_says_the_release_adds_a_bias_bound() -> None:
    from api.console.templating import templates

    preview = {
        "statistic": "unit_count",
        "dataset": "events",
        "cost": {"epsilon": 0.5},
        "accuracy": {"alpha": 0.05, "error_bound": 42.5, "covers": "noise"},
        "mechanism": "laplace",
        "noise_scale": 2.0,
        "fits_budget": True,
        "budget_remaining": {"epsilon": 1.0},
        "bounds": {"max_partitions_contributed": "auto", "clamp": None},
    }
    html = templates.get_template("console/_preview.html").render(preview=preview)
    facts = dict(zip(parse(html).texts("dt"), parse(html).texts("dd"), strict=True))
    assert "adds a bias bound estimated from the data" in facts["Automatic bounds"]
    fixed = {**preview, "bounds": {"max_partitions_contributed": 3}}
    assert "Automatic bounds" not in templates.get_template("console/_preview.html").render(
        preview=fixed
    )


def test_the_burn_down_says_what_is_spent_and_plots_what_remains(
    server: Service, sign_in: Callable[[str], httpx.Client], world: World
) -> None:
    api = server.client(world.analyst)
    assert api.post("/v1/queries", json={**VISITORS, "privacy": {"epsilon": 0.25}}).is_success
    page = parse(sign_in(world.auditor).get("/ui/auditor").text)
    (caption,) = [c for c in page.texts("figcaption") if c.startswith("ana on events")]
    assert caption == "ana on events: spent 0.25 of ε = 1, 0.75 remaining"
    (block,) = [s for s in page.all("script") if s.get("id") == "burn-ana-events"]
    chart = json.loads(block.text)
    assert chart["axis"] == chart["series"][0]["label"] == "ε remaining"
