"""Set-up and reads over the API that many tests share: the ``events`` dataset registered,
consumers with budgets, ledger pages. ``service`` is anything with ``settings`` and
``client(key)``: the in-process app or a uvicorn server (:data:`tests.conftest.Service`)."""

from __future__ import annotations

from typing import Any, Protocol

import httpx

from api.settings import Settings
from tests.factories import events_metadata, write_events

VISITORS: dict[str, Any] = {
    "dataset": "events",
    "statistic": "unit_count",
    "group_by": ["municipality"],
    "max_partitions_contributed": 3,
    "privacy": {"epsilon": 0.5},
}
"""Unique visitors per municipality at ε = 0.5."""


class Served(Protocol):
    """What the helpers need of a served app."""

    @property
    def settings(self) -> Settings: ...

    def client(self, key: str | None = None) -> httpx.Client: ...


def register_events(service: Served, admin: httpx.Client, **metadata: Any) -> None:
    """Write :func:`tests.factories.write_events`' file and register it as ``events``
    (``metadata`` overrides the registration body)."""
    write_events(service.settings.data_dir)
    response = admin.post("/v1/datasets", json=events_metadata(**metadata))
    assert response.status_code == 201, response.text


def create_consumer(admin: httpx.Client, name: str, role: str = "analyst") -> str:
    """Create a consumer; its API key."""
    response = admin.post("/v1/consumers", json={"name": name, "role": role})
    assert response.status_code == 201, response.text
    key: str = response.json()["api_key"]
    return key


def set_budget(
    admin: httpx.Client,
    consumer: str,
    dataset: str = "events",
    *,
    model: str = "pure",
    amount: float | str = 1.0,
) -> None:
    """Give ``consumer`` a budget of ``amount`` (ε for pure, ρ for zCDP) on ``dataset``."""
    unit = "epsilon" if model == "pure" else "rho"
    response = admin.put(f"/v1/budgets/{consumer}/{dataset}", json={"model": model, unit: amount})
    assert response.status_code == 200, response.text


def analyst(
    service: Served,
    admin: httpx.Client,
    name: str = "ana",
    *,
    model: str = "pure",
    amount: float | str = 1.0,
    datasets: tuple[str, ...] = ("events",),
) -> httpx.Client:
    """A new analyst with a budget of ``amount`` on each of ``datasets``; its client."""
    key = create_consumer(admin, name)
    for dataset in datasets:
        set_budget(admin, name, dataset, model=model, amount=amount)
    return service.client(key)


def ledger(admin: httpx.Client, **params: str) -> list[dict[str, Any]]:
    """The ledger's first page of up to 1000 entries matching ``params``."""
    response = admin.get("/v1/ledger", params={"limit": 1000, **params})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def all_entries(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    """Every entry of ``GET /v1/ledger`` matching ``params``, following cursors (pages of
    ``limit`` entries, 1000 unless given)."""
    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": params.get("limit", 1000)}
        if cursor is not None:
            query["cursor"] = cursor
        response = client.get("/v1/ledger", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        entries.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return entries
