"""``contribution_bounds_per`` over HTTP: k per day is released at its sensitivity and
stored in the canonical query; a bad value is a 422 before anything is spent."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Service
from tests.factories import DAYS, MUNICIPALITIES
from tests.support.api import analyst, ledger, register_events

PER_DAY: dict[str, Any] = {
    "dataset": "events",
    "statistic": "unit_count",
    "group_by": ["municipality", "day"],
    "contribution_bounds_per": ["day"],
    "max_partitions_contributed": 2,
    "privacy": {"epsilon": 0.5},
}
"""Unique visitors per municipality × day, at most 2 municipalities per device per day."""


def test_k_per_day_is_released_with_its_sensitivity(server: Service, admin: httpx.Client) -> None:
    register_events(server, admin)
    ana = analyst(server, admin, amount=1.0)
    response = ana.post("/v1/queries", json=PER_DAY)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["columns"] == ["municipality", "day", "value"]
    assert len(body["rows"]) == len(MUNICIPALITIES) * len(DAYS)
    # L1 = k · (number of public days) = 2 · 4, at ε 0.5
    assert body["noise_scale"] == pytest.approx(
        2 * len(DAYS) / (0.5 * 0.95)
    )  # 5%: the truncation estimate
    assert body["bounds"]["contribution_bounds_per"] == ["day"]
    assert body["budget_remaining"] == {"epsilon": 0.5}
    [entry] = ledger(admin, kind="release")
    assert entry["details"]["query"]["contribution_bounds_per"] == ["day"]
    # the same query is the same cache key; without the field it is another query
    again = ana.post("/v1/queries", json=PER_DAY).json()
    assert again["cached"] is True and again["id"] == body["id"]
    plain = {name: v for name, v in PER_DAY.items() if name != "contribution_bounds_per"}
    other = ana.post("/v1/queries/preview", json=plain).json()
    assert other["noise_scale"] == pytest.approx(2 / (0.5 * 0.95))
    assert "contribution_bounds_per" not in other["bounds"]


@pytest.mark.parametrize(
    ("per", "detail"),
    [
        (["hour"], "not in group_by"),
        (["municipality", "day"], "leave out at least one"),
        (["day", "day"], "twice"),
        ("day", None),
        ([7], None),
    ],
)
def test_a_bad_contribution_bounds_per_is_a_422_that_spends_nothing(
    server: Service, admin: httpx.Client, per: Any, detail: str | None
) -> None:
    register_events(server, admin)
    ana = analyst(server, admin, amount=1.0)
    for path in ("/v1/queries/preview", "/v1/queries"):
        response = ana.post(path, json={**PER_DAY, "contribution_bounds_per": per})
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        if detail is not None:
            assert detail in response.json()["detail"]
    assert ana.get("/v1/budgets").json()["items"][0]["spent"] == 0
    assert ledger(admin, kind="release") == []
