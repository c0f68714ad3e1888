"""Huge privacy amounts and out-of-range filter values: answered (ρ 1e5) or refused with a
422 before anything is stored or charged (ρ 1e9, filters outside Int64), on each backend."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Service
from tests.factories import events_metadata, write_events
from tests.reliability.support import VISITORS, assert_ledger_valid, budget_of, ledger_entries
from tests.support.api import create_consumer, register_events

INT64_MAX = 2**63 - 1


def _analyst(admin: httpx.Client, server: Service, budget: dict[str, Any]) -> httpx.Client:
    key = create_consumer(admin, "ana")
    response = admin.put("/v1/budgets/ana/events", json=budget)
    assert response.status_code == 200, response.text
    return server.client(key)


@pytest.fixture
def registered(server: Service, admin: httpx.Client) -> None:
    register_events(server, admin)


@pytest.mark.usefixtures("registered")
@pytest.mark.parametrize("rho", [1e5, 1e6])
def test_a_big_zcdp_budget_is_stored_and_shown(admin: httpx.Client, rho: float) -> None:
    admin.post("/v1/consumers", json={"name": "ana", "role": "analyst"})
    response = admin.put("/v1/budgets/ana/events", json={"model": "zcdp", "rho": rho})
    assert response.status_code == 200, response.text
    shown = response.json()
    assert shown["total"] == rho and shown["remaining"] == rho
    # The (ε, δ) equivalent is an upper bound that is at least ρ.
    assert shown["remaining_epsilon_delta"]["epsilon"] >= rho
    assert budget_of(admin, "ana")["total"] == rho
    assert_ledger_valid(admin)


@pytest.mark.usefixtures("registered")
def test_a_big_zcdp_query_cost_is_answered(server: Service, admin: httpx.Client) -> None:
    analyst = _analyst(admin, server, {"model": "zcdp", "rho": 1e5})
    body = {**VISITORS, "privacy": {"rho": 1e5}}
    preview = analyst.post("/v1/queries/preview", json=body)
    assert preview.status_code == 200, preview.text
    assert preview.json()["epsilon_delta"]["epsilon"] >= 1e5
    released = analyst.post("/v1/queries", json=body)
    assert released.status_code == 200, released.text
    assert budget_of(admin, "ana")["spent"] == 1e5


@pytest.mark.usefixtures("registered")
@pytest.mark.parametrize("model", ["pure", "zcdp"])
def test_a_budget_beyond_the_maximum_is_a_422_that_stores_nothing(
    admin: httpx.Client, model: str
) -> None:
    admin.post("/v1/consumers", json={"name": "ana", "role": "analyst"})
    before = len(ledger_entries(admin))
    field = "epsilon" if model == "pure" else "rho"
    response = admin.put("/v1/budgets/ana/events", json={"model": model, field: 1e9})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "1000000" in response.json()["detail"]
    assert admin.get("/v1/budgets", params={"consumer": "ana"}).json()["items"] == []
    assert len(ledger_entries(admin)) == before


@pytest.mark.parametrize("cap", [{"model": "zcdp", "rho": 1e5}, {"model": "pure", "epsilon": 1e6}])
def test_a_big_dataset_cap_is_registered(
    server: Service, admin: httpx.Client, cap: dict[str, Any]
) -> None:
    write_events(server.settings.data_dir)
    response = admin.post("/v1/datasets", json=events_metadata(budget_cap=cap))
    assert response.status_code == 201, response.text
    assert admin.get("/v1/datasets/events").status_code == 200


def test_a_dataset_cap_beyond_the_maximum_is_a_422_that_registers_nothing(
    server: Service, admin: httpx.Client
) -> None:
    write_events(server.settings.data_dir)
    before = len(ledger_entries(admin))
    response = admin.post(
        "/v1/datasets", json=events_metadata(budget_cap={"model": "zcdp", "rho": 1e9})
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert admin.get("/v1/datasets").json()["items"] == []
    assert len(ledger_entries(admin)) == before


@pytest.mark.usefixtures("registered")
@pytest.mark.parametrize("privacy", [{"epsilon": 1e9}, {"epsilon": 2e6}, {"rho": 1e9}])
def test_a_query_cost_beyond_the_maximum_is_a_422_that_spends_nothing(
    server: Service, admin: httpx.Client, privacy: dict[str, float]
) -> None:
    model = "pure" if "epsilon" in privacy else "zcdp"
    field = "epsilon" if model == "pure" else "rho"
    analyst = _analyst(admin, server, {"model": model, field: 1e6})
    before = len(ledger_entries(admin))
    body = {**VISITORS, "privacy": privacy}
    _refused_without_a_trace(analyst, admin, body, ledger_before=before)
    assert_ledger_valid(admin)


def _refused_without_a_trace(
    analyst: httpx.Client, admin: httpx.Client, body: dict[str, Any], *, ledger_before: int
) -> None:
    """Preview and query of ``body`` are both a 422 problem; nothing spent, and nothing
    ledgered but (for a query the route refused, not its JSON schema) one ``refused``
    entry of cost 0."""
    for path in ("/v1/queries/preview", "/v1/queries"):
        response = analyst.post(path, json=body)
        assert response.status_code == 422, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert budget_of(admin, "ana")["spent"] == 0
    added = ledger_entries(admin)[ledger_before:]
    assert len(added) <= 1, added
    assert all(e["kind"] == "refused" and e["details"]["reason"] == "invalid-query" for e in added)
    assert all(e["cost"] == {"model": "pure", "epsilon": 0} for e in added), added


OUT_OF_RANGE = [
    {"column": "hour", "op": "eq", "value": 2**63},
    {"column": "hour", "op": "eq", "value": -(2**63) - 1},
    {"column": "hour", "op": "ge", "value": 2**64 + 5},
    {"column": "hour", "op": "lt", "value": 1e19},  # a float naming an integer beyond Int64
    {"column": "hour", "op": "eq", "value": -1e300},
    {"column": "hour", "op": "in", "value": [1, 2, 9.3e18]},
    {"column": "hour", "op": "between", "value": [0, 2**63]},
    {"column": "hour", "op": "between", "value": [-1e19, 3]},
]


@pytest.mark.usefixtures("registered")
@pytest.mark.parametrize("where", OUT_OF_RANGE)
def test_filter_values_outside_int64_are_a_422_before_the_debit(
    server: Service, admin: httpx.Client, where: dict[str, Any]
) -> None:
    analyst = _analyst(admin, server, {"model": "pure", "epsilon": 1})
    before = len(ledger_entries(admin))
    body = {**VISITORS, "where": [where]}
    _refused_without_a_trace(analyst, admin, body, ledger_before=before)


@pytest.mark.usefixtures("registered")
def test_filter_values_at_the_int64_limits_are_answered(
    server: Service, admin: httpx.Client
) -> None:
    analyst = _analyst(admin, server, {"model": "pure", "epsilon": 1})
    body = {
        **VISITORS,
        "where": [{"column": "hour", "op": "between", "value": [-(2**63), INT64_MAX]}],
    }
    response = analyst.post("/v1/queries", json=body)
    assert response.status_code == 200, response.text


def test_the_api_and_the_database_agree_on_the_largest_amount() -> None:
    from db.amounts import MAX_AMOUNT, MAX_UNITS
    from privacy.amount import MAX_PRIVACY_AMOUNT

    assert MAX_AMOUNT == MAX_PRIVACY_AMOUNT
    assert 2 * MAX_UNITS < 2**63 - 1  # spent + cost never overflows a BIGINT
