"""Mean and quantile accuracy over HTTP: per-cell intervals, rank error, accuracy-first."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Service
from tests.factories import MUNICIPALITIES
from tests.support.api import analyst, ledger, register_events

MEAN: dict[str, Any] = {
    "dataset": "events",
    "statistic": "mean",
    "column": "dwell_minutes",
    "group_by": ["municipality"],
    "max_partitions_contributed": 3,
    "privacy": {"max_error": 30, "alpha": 0.05, "min_cell_rows": 200},
}
"""Mean dwell per municipality, the target holding for cells of at least 200 rows."""


def test_accuracy_first_mean_previews_releases_and_shows_intervals(
    server: Service, admin: httpx.Client
) -> None:
    register_events(server, admin)
    ana = analyst(server, admin, "ana", amount=20.0)
    preview = ana.post("/v1/queries/preview", json=MEAN)
    assert preview.status_code == 200, preview.text
    planned = preview.json()
    assert planned["columns"] == ["municipality", "value", "lower", "upper"]
    assert 0 < planned["accuracy"]["error_bound"] <= 30
    assert planned["accuracy"]["covers"] == "noise"
    assert "rank_error_bound" not in planned["accuracy"]  # absent when null
    released = ana.post("/v1/queries", json=MEAN)
    assert released.status_code == 200, released.text
    body = released.json()
    assert body["cost"] == planned["cost"]
    assert body["query"]["privacy"]["min_cell_rows"] == 200
    assert [row[0] for row in body["rows"]] == MUNICIPALITIES
    for _, value, lower, upper in body["rows"]:
        assert 0 <= lower <= value <= upper <= 240
    widest = max(max(v - lo, hi - v) for _, v, lo, hi in body["rows"])
    assert body["accuracy"]["error_bound"] == widest


def test_quantile_states_its_rank_error(server: Service, admin: httpx.Client) -> None:
    register_events(server, admin)
    ana = analyst(server, admin, "ana")
    body = {
        "dataset": "events",
        "statistic": "quantile",
        "column": "hour",
        "q": 0.5,
        "max_partitions_contributed": 3,
        "privacy": {"epsilon": 0.5},
    }
    response = ana.post("/v1/queries", json=body)
    assert response.status_code == 200, response.text
    accuracy = response.json()["accuracy"]
    assert accuracy["error_bound"] is None and accuracy["rank_error_bound"] > 0


def test_a_mean_target_without_min_cell_rows_is_a_422_that_spends_nothing(
    server: Service, admin: httpx.Client
) -> None:
    register_events(server, admin)
    ana = analyst(server, admin, "ana")
    cases = [
        {**MEAN, "privacy": {"max_error": 30}},
        {**MEAN, "privacy": {"max_error": 30, "min_cell_rows": 0}},
        {**MEAN, "privacy": {"max_error": 500, "min_cell_rows": 200}},
        {**MEAN, "statistic": "quantile", "q": 0.5},
        {**MEAN, "statistic": "count", "column": None},
    ]
    for body in cases:
        for path in ("/v1/queries/preview", "/v1/queries"):
            response = ana.post(path, json=body)
            assert response.status_code == 422, (body, response.text)
            assert response.headers["content-type"] == "application/problem+json"
    assert "min_cell_rows" in ana.post("/v1/queries", json=cases[0]).json()["detail"]
    assert ana.get("/v1/budgets").json()["items"][0]["spent"] == 0
    assert ledger(admin, kind="release") == []
