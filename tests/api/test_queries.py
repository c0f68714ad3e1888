"""The release path over HTTP: debit before read, ledger, refusals, caching, preview."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.conftest import Service
from tests.factories import MUNICIPALITIES
from tests.support.api import VISITORS, analyst, create_consumer, ledger, register_events


def _setup(
    server: Service,
    admin: httpx.Client,
    *,
    model: str = "pure",
    amount: float = 1.0,
    analysts: tuple[str, ...] = ("ana",),
    cap: dict[str, Any] | None = None,
) -> dict[str, httpx.Client]:
    register_events(server, admin, **({"budget_cap": cap} if cap else {}))
    return {name: analyst(server, admin, name, model=model, amount=amount) for name in analysts}


def test_release_is_debited_ledgered_and_shaped_as_the_spec(
    server: Service, admin: httpx.Client
) -> None:
    ana = _setup(server, admin)["ana"]
    response = ana.post("/v1/queries", json=VISITORS)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"].startswith("rel_") and body["cached"] is False
    assert body["columns"] == ["municipality", "value"]
    assert [row[0] for row in body["rows"]] == MUNICIPALITIES
    assert body["cost"] == {"model": "pure", "epsilon": 0.5}
    assert body["mechanism"] == "discrete_laplace"
    assert body["noise_scale"] == pytest.approx(3 / (0.5 * 0.95))  # 5%: the truncation estimate
    assert body["accuracy"]["alpha"] == 0.05 and body["accuracy"]["error_bound"] > 0
    assert body["budget_remaining"] == {"epsilon": 0.5}
    releases = ledger(admin, kind="release")
    assert len(releases) == 1
    entry = releases[0]
    assert entry["seq"] == body["ledger_seq"] and entry["actor"] == "ana"
    assert entry["cost"] == {"model": "pure", "epsilon": 0.5}
    assert entry["details"]["release_id"] == body["id"]
    assert entry["details"]["mechanism"] == "discrete_laplace"
    assert entry["details"]["noise_scale"] == body["noise_scale"]
    assert entry["request_id"] == response.headers["x-request-id"]
    outputs = ledger(admin, kind="release_output")
    assert len(outputs) == 1 and outputs[0]["details"]["rows"] == body["rows"]
    assert outputs[0]["seq"] > entry["seq"]
    assert admin.get("/v1/ledger/verify").json()["valid"] is True


def test_refusal_is_409_ledgered_at_cost_zero_and_spends_nothing(
    server: Service, admin: httpx.Client
) -> None:
    ana = _setup(server, admin, amount=0.3)["ana"]
    response = ana.post("/v1/queries", json=VISITORS)
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "budget-exceeded"
    assert "0.3" in problem["detail"] and problem["remaining"] == {"epsilon": 0.3}
    assert "0.5" in problem["detail"] and problem["asked"] == {"epsilon": 0.5}
    refused = ledger(admin, kind="refused")
    assert len(refused) == 1
    assert refused[0]["cost"] == {"model": "pure", "epsilon": 0}
    assert refused[0]["details"]["asked"] == {"model": "pure", "epsilon": 0.5}
    assert refused[0]["details"]["reason"] == "budget"
    budget = ana.get("/v1/budgets").json()["items"][0]
    assert budget["spent"] == 0 and budget["remaining"] == 0.3
    assert ledger(admin, kind="release") == []


def test_a_refusal_by_the_dataset_cap_says_what_was_asked_and_what_both_leave(
    server: Service, admin: httpx.Client
) -> None:
    register_events(server, admin, budget_cap={"model": "pure", "epsilon": 0.3})
    ana = analyst(server, admin, amount=1.0)
    response = ana.post("/v1/queries", json=VISITORS)
    assert response.status_code == 409
    problem = response.json()
    assert problem["type"] == "budget-exceeded"
    assert problem["asked"] == {"epsilon": 0.5}
    assert problem["remaining"] == {"epsilon": 1, "dataset_cap": {"epsilon": 0.3}}
    assert "0.5" in problem["detail"] and "0.3" in problem["detail"]
    assert "cap" in problem["detail"]
    assert ledger(admin, kind="refused")[0]["details"]["reason"] == "dataset_cap"


def test_same_query_is_served_from_cache_at_no_cost(server: Service, admin: httpx.Client) -> None:
    ana = _setup(server, admin, amount=0.5)["ana"]
    first = ana.post("/v1/queries", json=VISITORS).json()
    again = ana.post("/v1/queries", json=VISITORS)  # no budget left: still served
    assert again.status_code == 200
    second = again.json()
    assert second["cached"] is True and second["id"] == first["id"]
    assert second["rows"] == first["rows"]
    assert second["budget_remaining"] == {"epsilon": 0}
    reordered = {**VISITORS, "privacy": {"epsilon": "0.50"}, "where": []}
    assert ana.post("/v1/queries", json=reordered).json()["id"] == first["id"]
    assert len(ledger(admin, kind="release")) == 1
    rereads = ledger(admin, kind="reread")
    assert len(rereads) == 2 and all(r["cost"]["epsilon"] == 0 for r in rereads)
    stored = ana.get(f"/v1/queries/{first['id']}").json()
    assert stored["rows"] == first["rows"] and stored["cached"] is True
    listed = ana.get("/v1/queries").json()["items"]
    assert [item["id"] for item in listed] == [first["id"]]
    different = ana.post("/v1/queries", json={**VISITORS, "privacy": {"epsilon": 0.25}})
    assert different.status_code == 409


def test_preview_reads_no_data_and_spends_nothing(server: Service, admin: httpx.Client) -> None:
    ana = _setup(server, admin)["ana"]
    (server.settings.data_dir / "events.parquet").unlink()  # preview must not need it
    preview = ana.post("/v1/queries/preview", json=VISITORS)
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert body["cost"] == {"model": "pure", "epsilon": 0.5}
    assert body["noise_scale"] == pytest.approx(3 / (0.5 * 0.95)) and body["fits_budget"] is True
    assert body["truncation_cost"] == {"epsilon": 0.025}
    assert ana.get("/v1/budgets").json()["items"][0]["spent"] == 0
    kinds = {entry["kind"] for entry in ledger(admin)}
    assert not kinds & {"release", "refused", "reread", "release_output"}


def test_accuracy_first_picks_a_cost_that_meets_the_target(
    server: Service, admin: httpx.Client
) -> None:
    ana = _setup(server, admin, amount=5.0)["ana"]
    loose = ana.post("/v1/queries/preview", json={**VISITORS, "privacy": {"max_error": 40}})
    tight = ana.post("/v1/queries/preview", json={**VISITORS, "privacy": {"max_error": 10}})
    assert loose.status_code == tight.status_code == 200, tight.text
    assert loose.json()["accuracy"]["error_bound"] <= 40
    assert tight.json()["accuracy"]["error_bound"] <= 10
    assert tight.json()["cost"]["epsilon"] > loose.json()["cost"]["epsilon"]
    released = ana.post("/v1/queries", json={**VISITORS, "privacy": {"max_error": 10}}).json()
    assert released["cost"] == tight.json()["cost"]
    # the target is on the noise (all a quote can know before reading data): the release
    # states the noise at the α that its bias bound leaves, and the bias bound on top
    accuracy = released["accuracy"]
    assert accuracy["covers"] == "noise_and_bias" and accuracy["bias_bound"] >= 0
    assert accuracy["noise_error_bound"] <= 10 * 1.1  # at 0.8·α instead of α


def test_roles_and_isolation_for_queries(server: Service, admin: httpx.Client) -> None:
    clients = _setup(server, admin, analysts=("ana", "bob"))
    auditor = server.client(create_consumer(admin, "aud", "auditor"))
    for client in (auditor, admin):
        assert client.post("/v1/queries", json=VISITORS).status_code == 403
        assert client.post("/v1/queries/preview", json=VISITORS).status_code == 403
    released = clients["ana"].post("/v1/queries", json=VISITORS).json()
    other = clients["bob"].get(f"/v1/queries/{released['id']}")
    assert other.status_code == 404
    assert clients["bob"].get("/v1/queries").json()["items"] == []
    assert clients["bob"].get("/v1/queries/rel_nothing").status_code == 404


def test_unknown_dataset_and_invalid_queries_are_problems_that_spend_nothing(
    server: Service, admin: httpx.Client
) -> None:
    ana = _setup(server, admin)["ana"]
    cases = [
        ({**VISITORS, "dataset": "nothing"}, 404),
        ({**VISITORS, "group_by": ["dwell_minutes"]}, 422),
        ({**VISITORS, "group_by": ["device_id"]}, 422),
        ({**VISITORS, "statistic": "median"}, 422),
        ({**VISITORS, "privacy": {"epsilon": 0}}, 422),
        ({**VISITORS, "privacy": {"rho": 0.1}}, 422),
        ({**VISITORS, "statistic": "sum", "column": "dwell_minutes", "bounds": [10, 1]}, 422),
        ({**VISITORS, "statistic": "quantile", "column": "dwell_minutes", "q": 1.5}, 422),
        ({**VISITORS, "where": [{"column": "nope", "op": "eq", "value": 1}]}, 422),
    ]
    for body, status in cases:
        response = ana.post("/v1/queries", json=body)
        assert response.status_code == status, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert ana.get("/v1/budgets").json()["items"][0]["spent"] == 0
    assert ledger(admin, kind="release") == []


def test_concurrent_queries_never_overspend(server: Service, admin: httpx.Client) -> None:
    ana = _setup(server, admin, amount=1.0)["ana"]
    bodies = [
        {
            **VISITORS,
            "privacy": {"epsilon": 0.1},
            "where": [{"column": "hour", "op": "ge", "value": hour}],
        }
        for hour in range(20)
    ]
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(lambda b: ana.post("/v1/queries", json=b).status_code, bodies))
    assert statuses.count(200) == 10 and statuses.count(409) == 10
    budget = ana.get("/v1/budgets").json()["items"][0]
    assert budget["spent"] == 1 and budget["remaining"] == 0
    assert len(ledger(admin, kind="release")) == 10
    assert admin.get("/v1/ledger/verify").json()["valid"] is True


def test_zcdp_budget_reports_rho_and_epsilon_delta(server: Service, admin: httpx.Client) -> None:
    ana = _setup(server, admin, model="zcdp", amount=0.5)["ana"]
    body = ana.post("/v1/queries", json={**VISITORS, "privacy": {"rho": 0.125}}).json()
    assert body["cost"] == {"model": "zcdp", "rho": 0.125}
    assert body["mechanism"] == "discrete_gaussian"
    assert body["noise_scale"] == pytest.approx(3**0.5 / (2 * 0.125 * 0.95) ** 0.5, rel=1e-6)
    assert body["epsilon_delta"]["delta"] == 1e-9 and body["epsilon_delta"]["epsilon"] > 0
    assert body["budget_remaining"] == {"rho": 0.375}


def test_preview_makes_the_cap_check_the_query_makes(server: Service, admin: httpx.Client) -> None:
    register_events(server, admin, budget_cap={"model": "pure", "epsilon": 0.3})
    ana = analyst(server, admin, amount=1.0)
    preview = ana.post("/v1/queries/preview", json=VISITORS).json()
    assert preview["budget_remaining"] == {"epsilon": 1}
    assert preview["dataset_cap_remaining"] == {"epsilon": 0.3}
    assert preview["fits_budget"] is False
    assert ana.post("/v1/queries", json=VISITORS).status_code == 409  # as the preview said
    cheaper = ana.post(
        "/v1/queries/preview", json={**VISITORS, "privacy": {"epsilon": 0.25}}
    ).json()
    assert cheaper["fits_budget"] is True
    assert (
        ana.post("/v1/queries", json={**VISITORS, "privacy": {"epsilon": 0.25}}).status_code == 200
    )


def test_preview_without_a_cap_shows_none(server: Service, admin: httpx.Client) -> None:
    ana = _setup(server, admin, amount=0.3)["ana"]
    preview = ana.post("/v1/queries/preview", json=VISITORS).json()
    assert preview["dataset_cap_remaining"] is None and preview["fits_budget"] is False


def test_a_filter_outside_the_public_keys_is_a_422_that_spends_nothing(
    server: Service, admin: httpx.Client
) -> None:
    ana = _setup(server, admin, amount=1.0)["ana"]
    nowhere = {**VISITORS, "where": [{"column": "municipality", "op": "in", "value": ["GM9"]}]}
    for path in ("/v1/queries/preview", "/v1/queries"):
        response = ana.post(path, json=nowhere)
        assert response.status_code == 422, response.text
        problem = response.json()
        assert problem["type"] == "invalid-query"
        assert "none of the column's public keys" in problem["detail"]
    assert ana.get("/v1/budgets").json()["items"][0]["spent"] == 0
    assert ledger(admin, kind="release") == []
    some = {
        **VISITORS,
        "where": [{"column": "municipality", "op": "in", "value": ["GM9", MUNICIPALITIES[0]]}],
    }
    assert ana.post("/v1/queries", json=some).status_code == 200


def test_an_invalid_cost_says_what_is_wrong_with_it(server: Service, admin: httpx.Client) -> None:
    """A cost with 13 decimals fails every branch of the privacy union; the detail names
    the branch it was meant for (its decimals), not another branch's missing field."""
    client = _setup(server, admin)["ana"]
    body = {**VISITORS, "privacy": {"rho": 0.0101100000001}}
    response = client.post("/v1/queries/preview", json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "RhoLoss.rho" in detail and "decimal places" in detail, detail
