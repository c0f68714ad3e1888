"""Budgets: admins set them (never below what is spent), analysts read their own,
auditors read all; amounts are exact."""

from __future__ import annotations

import math
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from db import budgets
from db.amounts import cost_units
from db.budgets import Debited, Refused
from db.engine import Database
from tests.conftest import Service
from tests.factories import events_metadata, write_events
from tests.support.api import create_consumer

PROBLEM = "application/problem+json"


@pytest.fixture
def database(server: Service) -> Iterator[Database]:
    """The server's database, opened directly (to spend without running queries)."""
    opened = Database(server.settings.database_url)
    yield opened
    opened.dispose()


def _dataset(server: Service, admin: httpx.Client, name: str = "events", **overrides: Any) -> None:
    if not (server.settings.data_dir / "events.parquet").exists():
        write_events(server.settings.data_dir)
    response = admin.post("/v1/datasets", json=events_metadata(name=name, **overrides))
    assert response.status_code == 201, response.text


def _spend(
    database: Database, consumer: str, amount: str, model: str = "pure", dataset: str = "events"
) -> Debited | Refused:
    return budgets.spend(
        database,
        consumer=consumer,
        dataset=dataset,
        model=model,
        cost_units=cost_units(Decimal(amount)),
        details={"test": True},
    )


def _put(admin: httpx.Client, consumer: str, body: Any, dataset: str = "events") -> httpx.Response:
    return admin.put(f"/v1/budgets/{consumer}/{dataset}", json=body)


def _entries(admin: httpx.Client) -> int:
    count: int = admin.get("/v1/ledger/verify").json()["entries"]
    return count


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def test_put_creates_and_changes_budgets(
    server: Service, admin: httpx.Client, database: Database
) -> None:
    _dataset(server, admin)
    create_consumer(admin, "ana")
    create_consumer(admin, "bob")
    created = _put(admin, "ana", {"model": "pure", "epsilon": 3.0})
    assert created.status_code == 200, created.text
    ana = created.json()
    assert {
        k: ana[k]
        for k in (
            "consumer",
            "dataset",
            "model",
            "unit",
            "total",
            "spent",
            "remaining",
            "remaining_epsilon_delta",
        )
    } == {
        "consumer": "ana",
        "dataset": "events",
        "model": "pure",
        "unit": "epsilon",
        "total": 3.0,
        "spent": 0,
        "remaining": 3.0,
        "remaining_epsilon_delta": None,
    }
    bob = _put(admin, "bob", {"model": "zcdp", "rho": 0.5}).json()
    assert (bob["model"], bob["unit"], bob["total"], bob["remaining"]) == ("zcdp", "rho", 0.5, 0.5)
    equivalent = bob["remaining_epsilon_delta"]
    assert equivalent["delta"] == 1e-9
    # The optimal conversion is below the classic bound rho + 2 sqrt(rho log(1/delta)).
    assert 0.5 < equivalent["epsilon"] < 0.5 + 2 * math.sqrt(0.5 * math.log(1e9))

    assert isinstance(_spend(database, "ana", "1.25"), Debited)
    assert isinstance(_spend(database, "bob", "0.125", model="zcdp"), Debited)
    listed = {b["consumer"]: b for b in admin.get("/v1/budgets").json()["items"]}
    assert (listed["ana"]["total"], listed["ana"]["spent"], listed["ana"]["remaining"]) == (
        3.0,
        1.25,
        1.75,
    )
    assert (listed["bob"]["spent"], listed["bob"]["remaining"]) == (0.125, 0.375)
    smaller = listed["bob"]["remaining_epsilon_delta"]["epsilon"]
    assert 0 < smaller < equivalent["epsilon"]

    raised = _put(admin, "ana", {"model": "pure", "epsilon": 5}).json()
    assert (raised["total"], raised["spent"], raised["remaining"]) == (5, 1.25, 3.75)
    exact = _put(admin, "ana", {"model": "pure", "epsilon": 1.25}).json()
    assert (exact["total"], exact["remaining"]) == (1.25, 0)
    assert isinstance(_spend(database, "ana", "0.000000000001"), Refused)

    entries = admin.get("/v1/ledger", params={"kind": "budget_set"}).json()["items"]
    assert [(e["consumer"], e["dataset"], e["details"]["budget"]) for e in entries] == [
        ("ana", "events", {"model": "pure", "epsilon": 3}),
        ("bob", "events", {"model": "zcdp", "rho": 0.5}),
        ("ana", "events", {"model": "pure", "epsilon": 5}),
        ("ana", "events", {"model": "pure", "epsilon": 1.25}),
    ]
    assert entries[2]["details"]["previous"] == {"model": "pure", "epsilon": 3}
    assert entries[2]["details"]["spent"] == {"model": "pure", "epsilon": 1.25}


def test_zcdp_equivalent_uses_the_declared_delta(server: Service, admin: httpx.Client) -> None:
    _dataset(server, admin, delta=1e-6)
    _dataset(server, admin, name="strict")
    create_consumer(admin, "ana")
    loose = _put(admin, "ana", {"model": "zcdp", "rho": 0.5}).json()
    strict = _put(admin, "ana", {"model": "zcdp", "rho": 0.5}, dataset="strict").json()
    assert loose["remaining_epsilon_delta"]["delta"] == 1e-6
    assert strict["remaining_epsilon_delta"]["delta"] == 1e-9
    assert (
        loose["remaining_epsilon_delta"]["epsilon"] < strict["remaining_epsilon_delta"]["epsilon"]
    )
    listed = {b["dataset"]: b for b in admin.get("/v1/budgets").json()["items"]}
    assert listed["events"]["remaining_epsilon_delta"] == loose["remaining_epsilon_delta"]
    assert listed["strict"]["remaining_epsilon_delta"] == strict["remaining_epsilon_delta"]


def test_refused_changes(server: Service, admin: httpx.Client, database: Database) -> None:
    _dataset(server, admin)
    write_events(server.settings.data_dir, seed=8, name="capped.parquet")  # a cap per file
    _dataset(
        server,
        admin,
        name="capped",
        path="capped.parquet",
        budget_cap={"model": "pure", "epsilon": 2},
    )
    create_consumer(admin, "ana")
    create_consumer(admin, "root", "admin")
    create_consumer(admin, "aud", "auditor")
    assert _put(admin, "ana", {"model": "pure", "epsilon": 2}).status_code == 200
    assert isinstance(_spend(database, "ana", "1.5"), Debited)
    before = _entries(admin)

    below = _problem(_put(admin, "ana", {"model": "pure", "epsilon": 1.4}), 409)
    assert below["type"] == "conflict" and "1.5" in below["detail"]
    assert _problem(_put(admin, "ana", {"model": "zcdp", "rho": 5}), 409)["type"] == "conflict"
    assert _problem(_put(admin, "nobody", {"model": "pure", "epsilon": 1}), 404)
    assert _problem(_put(admin, "ana", {"model": "pure", "epsilon": 1}, dataset="nothing"), 404)
    assert _problem(_put(admin, "root", {"model": "pure", "epsilon": 1}), 422)
    assert _problem(_put(admin, "aud", {"model": "pure", "epsilon": 1}), 422)
    assert _problem(_put(admin, "ana", {"model": "zcdp", "rho": 1}, dataset="capped"), 422)
    for amount in (
        0,
        -1,
        -0.0,
        "NaN",
        "Infinity",
        "-Infinity",
        "abc",
        "",
        None,
        True,
        [1],
        {"epsilon": 1},
        1e7,
        "1e7",
        10**30,
        "0.0000000000001",
    ):
        _problem(_put(admin, "ana", {"model": "pure", "epsilon": amount}), 422)
    for raw in (
        '{"model": "pure", "epsilon": NaN}',
        '{"model": "pure", "epsilon": Infinity}',
        '{"model": "pure", "epsilon": 1e309}',
        '{"model": "pure", "epsilon": -1e309}',
        '{"model": "pure"}',
        '{"model": "pure", "epsilon": 1, "rho": 1}',
        '{"model": "approx", "epsilon": 1}',
        '{"epsilon": 1}',
        "[]",
    ):
        response = admin.put(
            "/v1/budgets/ana/events", content=raw, headers={"content-type": "application/json"}
        )
        _problem(response, 422)
    assert _entries(admin) == before, "a refused change was ledgered"
    ana = admin.get("/v1/budgets", params={"consumer": "ana"}).json()["items"]
    assert [(b["model"], b["total"], b["spent"]) for b in ana] == [("pure", 2, 1.5)]
    # Before anything is spent the model may change.
    assert _put(admin, "ana", {"model": "pure", "epsilon": 1}, dataset="capped").status_code == 200
    changed = _put(admin, "ana", {"model": "pure", "epsilon": 3}, dataset="capped").json()
    assert changed["total"] == 3
    create_consumer(admin, "bob")
    assert _put(admin, "bob", {"model": "pure", "epsilon": 1}).status_code == 200
    switched = _put(admin, "bob", {"model": "zcdp", "rho": 0.25}).json()
    assert (switched["model"], switched["total"]) == ("zcdp", 0.25)


def test_who_sees_which_budgets(server: Service, admin: httpx.Client) -> None:
    _dataset(server, admin)
    _dataset(server, admin, name="other")
    ana = server.client(create_consumer(admin, "ana"))
    bob = server.client(create_consumer(admin, "bob"))
    auditor = server.client(create_consumer(admin, "aud", "auditor"))
    for consumer, dataset in (("ana", "events"), ("bob", "events"), ("bob", "other")):
        assert (
            _put(admin, consumer, {"model": "pure", "epsilon": 1}, dataset=dataset).status_code
            == 200
        )

    def pairs(client: httpx.Client, **params: str) -> list[tuple[str, str]]:
        response = client.get("/v1/budgets", params=params)
        assert response.status_code == 200, response.text
        return [(b["consumer"], b["dataset"]) for b in response.json()["items"]]

    assert pairs(ana) == [("ana", "events")]
    assert pairs(ana, consumer="bob") == [("ana", "events")]
    assert pairs(ana, dataset="other") == []
    assert pairs(bob) == [("bob", "events"), ("bob", "other")]
    assert pairs(bob, dataset="other") == [("bob", "other")]
    everything = [("ana", "events"), ("bob", "events"), ("bob", "other")]
    assert pairs(auditor) == pairs(admin) == everything
    assert pairs(auditor, consumer="bob") == [("bob", "events"), ("bob", "other")]
    assert pairs(auditor, dataset="events") == [("ana", "events"), ("bob", "events")]
    assert pairs(auditor, consumer="nobody") == []


def test_decimal_amounts_are_exact(
    server: Service, admin: httpx.Client, database: Database
) -> None:
    _dataset(server, admin)
    create_consumer(admin, "ana")
    assert _put(admin, "ana", {"model": "pure", "epsilon": 0.3}).json()["total"] == 0.3
    for expected_remaining in ("0.2", "0.1", "0"):
        debited = _spend(database, "ana", "0.1")
        assert isinstance(debited, Debited)
        assert debited.remaining_units == cost_units(Decimal(expected_remaining))
    budget = admin.get("/v1/budgets").json()["items"][0]
    assert (budget["spent"], budget["remaining"]) == (0.3, 0)
    refused = _spend(database, "ana", "0.1")
    assert isinstance(refused, Refused)
    assert (refused.reason, refused.remaining_units) == ("budget", 0)
    kinds = [e["kind"] for e in admin.get("/v1/ledger", params={"consumer": "ana"}).json()["items"]]
    assert kinds[-4:] == ["release", "release", "release", "refused"]
    refusal = admin.get("/v1/ledger", params={"kind": "refused"}).json()["items"][0]
    assert refusal["cost"] == {"model": "pure", "epsilon": 0}
    assert refusal["details"]["asked"] == {"model": "pure", "epsilon": 0.1}
    assert refusal["details"]["reason"] == "budget"
    # Twelve decimal places are exact too; a string amount is read as a decimal.
    tiny = _put(admin, "ana", {"model": "pure", "epsilon": "0.300000000001"}).json()
    assert tiny["remaining"] == float(Decimal("0.000000000001"))
    assert isinstance(_spend(database, "ana", "0.000000000001"), Debited)
    assert admin.get("/v1/budgets").json()["items"][0]["remaining"] == 0
