"""Budgets per period over the API: with a monthly budget of ε 1 a query on March and one
on April each get their own ε 1, a second one on March is refused (409, naming the month),
a query spanning both months is a 422 that spends nothing, and every response states the
cumulative guarantee for a unit present in all the months charged (ε 2 after both)."""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx
import pytest

from ruis_client import BudgetExceeded, BudgetPeriod, Cumulative, Ruis
from ruis_client import InvalidQuery as ClientInvalidQuery
from tests.conftest import Service
from tests.factories import MARCH_APRIL, events_metadata, write_events
from tests.support.api import create_consumer, ledger

PROBLEM = "application/problem+json"
MONTHLY = {"column": "day", "every": "month"}


def _register(server: Service, admin: httpx.Client, **overrides: Any) -> None:
    write_events(server.settings.data_dir, days=MARCH_APRIL)
    response = admin.post("/v1/datasets", json=events_metadata(days=MARCH_APRIL, **overrides))
    assert response.status_code == 201, response.text


def _analyst(
    server: Service, admin: httpx.Client, budget: dict[str, Any], name: str = "ana"
) -> httpx.Client:
    key = create_consumer(admin, name)
    response = admin.put(f"/v1/budgets/{name}/events", json=budget)
    assert response.status_code == 200, response.text
    return server.client(key)


def _query(
    low: str, high: str, privacy: dict[str, float] | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "dataset": "events",
        "statistic": "count",
        "where": [{"column": "day", "op": "between", "value": [low, high]}],
        "privacy": privacy or {"epsilon": 1},
        **extra,
    }


MARCH = ("2026-03-01", "2026-03-31")
APRIL = ("2026-04-01", "2026-04-30")


def _entries(admin: httpx.Client) -> int:
    count: int = admin.get("/v1/ledger/verify").json()["entries"]
    return count


def test_a_monthly_budget_charges_each_month_and_adds_up(
    server: Service, admin: httpx.Client
) -> None:
    _register(server, admin)
    ana = _analyst(server, admin, {"model": "pure", "epsilon": 1, "period": MONTHLY})

    march = ana.post("/v1/queries", json=_query(*MARCH))
    assert march.status_code == 200, march.text
    body = march.json()
    assert body["period"] == {
        "column": "day",
        "every": "month",
        "period": "2026-03",
        "start": "2026-03-01",
        "end": "2026-03-31",
    }
    assert body["budget_remaining"] == {"epsilon": 0.0}
    assert body["cumulative"] == {"epsilon": 1.0}

    april = ana.post("/v1/queries", json=_query(*APRIL))
    assert april.status_code == 200, april.text
    assert april.json()["period"]["period"] == "2026-04"
    assert april.json()["budget_remaining"] == {"epsilon": 0.0}
    assert april.json()["cumulative"] == {"epsilon": 2.0}

    # a second ε 1 on March (another query: not the cached one) does not fit March
    again = ana.post("/v1/queries", json=_query(*MARCH, group_by=["municipality"]))
    assert again.status_code == 409, again.text
    assert again.headers["content-type"] == PROBLEM
    problem = again.json()
    assert problem["type"].endswith("budget-exceeded")
    assert "2026-03" in problem["detail"] and "month" in problem["detail"]
    assert problem["remaining"] == {"epsilon": 0.0, "period": "2026-03"}

    # spanning both months, or not filtering the month at all: a 422, nothing spent
    before = _entries(admin)
    spanning = ana.post("/v1/queries", json=_query("2026-03-15", "2026-04-15"))
    assert spanning.status_code == 422, spanning.text
    assert spanning.headers["content-type"] == PROBLEM
    assert "span 2026-03 to 2026-04" in spanning.json()["detail"]
    unfiltered = ana.post(
        "/v1/queries", json={**_query(*MARCH), "where": [], "privacy": {"epsilon": 0.1}}
    )
    assert unfiltered.status_code == 422, unfiltered.text
    assert "no filter on 'day'" in unfiltered.json()["detail"]
    preview = ana.post("/v1/queries/preview", json=_query("2026-03-15", "2026-04-15"))
    assert preview.status_code == 422
    # nothing spent; the two refused queries are one `refused` entry (one a minute)
    assert _entries(admin) == before + 1
    refusal = admin.get("/v1/ledger", params={"kind": "refused"}).json()["items"][-1]
    assert refusal["details"]["reason"] == "invalid-query" and refusal["cost"]["epsilon"] == 0

    # the cached March answer and its re-read state the cumulative figure now
    cached = ana.post("/v1/queries", json=_query(*MARCH))
    assert cached.status_code == 200 and cached.json()["cached"] is True
    assert cached.json()["cumulative"] == {"epsilon": 2.0}
    reread = ana.get(f"/v1/queries/{body['id']}")
    assert reread.status_code == 200
    assert reread.json()["cumulative"] == {"epsilon": 2.0}
    assert reread.json()["budget_remaining"] == {"epsilon": 0.0}

    # a preview answers for its month: April is spent
    ahead = ana.post("/v1/queries/preview", json={**_query(*APRIL), "privacy": {"epsilon": 0.5}})
    assert ahead.status_code == 200, ahead.text
    assert ahead.json()["fits_budget"] is False
    assert ahead.json()["period"]["period"] == "2026-04"
    assert ahead.json()["cumulative"] == {"epsilon": 2.0}

    # the listing shows each month charged, the per-month total and the cumulative figure
    (listed,) = ana.get("/v1/budgets").json()["items"]
    assert listed["period"] == MONTHLY
    assert (listed["total"], listed["spent"], listed["remaining"]) == (1.0, 1.0, 0.0)
    assert listed["periods"] == [
        {
            "period": "2026-03",
            "start": "2026-03-01",
            "end": "2026-03-31",
            "total": 1.0,
            "spent": 1.0,
            "remaining": 0.0,
        },
        {
            "period": "2026-04",
            "start": "2026-04-01",
            "end": "2026-04-30",
            "total": 1.0,
            "spent": 1.0,
            "remaining": 0.0,
        },
    ]
    assert listed["cumulative"] == {"epsilon": 2.0}

    # the ledger records each charge's period (and the refusal's), and verifies
    entries = ledger(admin, dataset="events")
    released = [e for e in entries if e["kind"] == "release"]
    assert [e["details"]["period"]["period"] for e in released] == ["2026-03", "2026-04"]
    refusals = [e for e in entries if e["kind"] == "refused"]
    assert [e["details"]["reason"] for e in refusals] == ["budget", "invalid-query"]
    refused = refusals[0]  # the over-budget one names its period
    assert refused["details"]["period"]["period"] == "2026-03"
    assert refused["cost"] == {"model": "pure", "epsilon": 0}
    (granted,) = [e for e in entries if e["kind"] == "budget_set"]
    assert granted["details"]["period"] == MONTHLY
    assert admin.get("/v1/ledger/verify").json()["valid"] is True


def test_a_period_total_never_goes_below_what_a_month_spent(
    server: Service, admin: httpx.Client
) -> None:
    _register(server, admin)
    ana = _analyst(server, admin, {"model": "pure", "epsilon": 1, "period": MONTHLY})
    spent = ana.post("/v1/queries", json=_query(*MARCH, privacy={"epsilon": 0.6}))
    assert spent.status_code == 200, spent.text
    lower = admin.put(
        "/v1/budgets/ana/events", json={"model": "pure", "epsilon": 0.5, "period": MONTHLY}
    )
    assert lower.status_code == 409, lower.text
    assert "what a period already spent" in lower.json()["detail"]
    weekly = admin.put(
        "/v1/budgets/ana/events",
        json={"model": "pure", "epsilon": 1, "period": {"column": "day", "every": "week"}},
    )
    assert weekly.status_code == 409 and "period cannot change" in weekly.json()["detail"]
    raised = admin.put(
        "/v1/budgets/ana/events", json={"model": "pure", "epsilon": 2, "period": MONTHLY}
    )
    assert raised.status_code == 200, raised.text
    assert raised.json()["periods"][0]["remaining"] == pytest.approx(1.4)


def test_the_dataset_cap_holds_over_all_months_together(
    server: Service, admin: httpx.Client
) -> None:
    _register(server, admin, budget_cap={"model": "pure", "epsilon": 1.5})
    ana = _analyst(server, admin, {"model": "pure", "epsilon": 1, "period": MONTHLY})
    assert ana.post("/v1/queries", json=_query(*MARCH)).status_code == 200
    capped = ana.post("/v1/queries", json=_query(*APRIL))
    assert capped.status_code == 409, capped.text
    assert "cap" in capped.json()["detail"]
    fits = ana.post("/v1/queries", json=_query(*APRIL, privacy={"epsilon": 0.5}))
    assert fits.status_code == 200, fits.text
    assert fits.json()["cumulative"] == {"epsilon": 1.5}


def test_a_zcdp_budget_per_week_sums_rho_with_its_epsilon_delta(
    server: Service, admin: httpx.Client
) -> None:
    _register(server, admin)
    weekly = {"column": "day", "every": "week"}
    ana = _analyst(server, admin, {"model": "zcdp", "rho": 0.5, "period": weekly})
    first = ana.post("/v1/queries", json=_query("2026-03-02", "2026-03-08", privacy={"rho": 0.25}))
    assert first.status_code == 200, first.text
    assert first.json()["period"]["period"] == "2026-W10"
    second = ana.post("/v1/queries", json=_query("2026-03-09", "2026-03-15", privacy={"rho": 0.5}))
    assert second.status_code == 200, second.text
    cumulative = second.json()["cumulative"]
    assert cumulative["rho"] == 0.75
    assert cumulative["epsilon_delta"]["delta"] == 1e-9
    assert cumulative["epsilon_delta"]["epsilon"] > 0.75  # ρ-zCDP → (ε, δ): ε > ρ
    across = ana.post("/v1/queries", json=_query("2026-03-08", "2026-03-09", privacy={"rho": 0.1}))
    assert across.status_code == 422 and "2026-W10 to 2026-W11" in across.json()["detail"]
    (listed,) = ana.get("/v1/budgets").json()["items"]
    assert [p["period"] for p in listed["periods"]] == ["2026-W10", "2026-W11"]
    assert listed["cumulative"]["rho"] == 0.75


@pytest.mark.parametrize("column", ["municipality", "dwell_minutes", "nope"])
def test_a_period_needs_a_date_column(server: Service, admin: httpx.Client, column: str) -> None:
    _register(server, admin)
    create_consumer(admin, "ana")
    response = admin.put(
        "/v1/budgets/ana/events",
        json={"model": "pure", "epsilon": 1, "period": {"column": column, "every": "month"}},
    )
    assert response.status_code == 422, response.text
    assert "period column" in response.json()["detail"]
    unknown = admin.put(
        "/v1/budgets/ana/events",
        json={"model": "pure", "epsilon": 1, "period": {"column": "day", "every": "year"}},
    )
    assert unknown.status_code == 422


def test_the_python_client_reads_periods_and_the_cumulative_figure(
    server: Service, admin: httpx.Client
) -> None:
    _register(server, admin)
    key = create_consumer(admin, "ana")
    response = admin.put(
        "/v1/budgets/ana/events", json={"model": "pure", "epsilon": 1, "period": MONTHLY}
    )
    assert response.status_code == 200, response.text
    with Ruis(server.url, key, transport=server.transport) as ruis:
        march = [("day", "between", [date(2026, 3, 1), date(2026, 3, 31)])]
        released = ruis.query("events", "count", where=march, epsilon=0.75)
        assert released.period is not None and released.period["period"] == "2026-03"
        assert released.cumulative == Cumulative("pure", 0.75)
        preview = ruis.preview("events", "count", where=march, epsilon=0.5)
        assert preview.fits_budget is False and preview.cumulative == Cumulative("pure", 0.75)
        with pytest.raises(BudgetExceeded) as refused:
            ruis.query("events", "unit_count", where=march, epsilon=0.5)
        assert refused.value.remaining["period"] == "2026-03"
        with pytest.raises(ClientInvalidQuery):
            ruis.query("events", "count", epsilon=0.5)
        budget = ruis.budget("events")
        assert budget.period == MONTHLY
        assert budget.periods == (
            BudgetPeriod("2026-03", "2026-03-01", "2026-03-31", 1.0, 0.75, 0.25),
        )
        assert budget.cumulative == Cumulative("pure", 0.75)
