"""Private keys over HTTP: a column declared ``"keys": "private"`` is grouped on under a
zCDP budget, the response says how many keys OpenDP selected, its threshold and δ (also in
the preview and the ledger); under a pure budget it is a 422 that spends nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ruis_client import Preview, Release
from tests.conftest import Service
from tests.factories import MUNICIPALITIES, events_metadata, write_events
from tests.support.api import analyst, ledger

BY_MUNICIPALITY: dict[str, Any] = {
    "dataset": "roam",
    "statistic": "unit_count",
    "group_by": ["municipality"],
    "max_partitions_contributed": 2,
    "privacy": {"rho": 0.05},
}


def _register(server: Service, admin: httpx.Client) -> None:
    """The events file as ``roam``, its municipalities declared private."""
    write_events(server.settings.data_dir)
    body = events_metadata(name="roam", delta=1e-8)
    body["columns"]["municipality"] = {"type": "categorical", "keys": "private"}
    response = admin.post("/v1/datasets", json=body)
    assert response.status_code == 201, response.text
    shown = admin.get("/v1/datasets/roam").json()
    assert shown["columns"]["municipality"]["keys"] == "private"


def test_private_keys_are_selected_and_said_so(server: Service, admin: httpx.Client) -> None:
    _register(server, admin)
    ana = analyst(server, admin, model="zcdp", amount=0.1, datasets=("roam",))
    preview = ana.post("/v1/queries/preview", json=BY_MUNICIPALITY)
    assert preview.status_code == 200, preview.text
    planned = preview.json()
    assert planned["threshold"] >= 2 and 0 < planned["delta"] <= 1e-8
    assert "keys_selected" not in planned and "truncation_cost" not in planned
    response = ana.post("/v1/queries", json=BY_MUNICIPALITY)
    assert response.status_code == 200, response.text
    body = response.json()
    # ~300 devices per municipality, far above the threshold: every one is selected
    assert [row[0] for row in body["rows"]] == sorted(MUNICIPALITIES)
    assert body["keys_selected"] == len(MUNICIPALITIES)
    assert (body["threshold"], body["delta"]) == (planned["threshold"], planned["delta"])
    assert body["noise_scale"] == planned["noise_scale"]
    assert body["budget_remaining"] == {"rho": pytest.approx(0.05)}
    [entry] = ledger(admin, kind="release")
    assert entry["details"]["key_selection"] == {
        "threshold": planned["threshold"],
        "delta": planned["delta"],
    }
    [output] = ledger(admin, kind="release_output")
    assert output["details"]["keys_selected"] == len(MUNICIPALITIES)
    assert output["details"]["delta"] == body["delta"]
    again = ana.post("/v1/queries", json=BY_MUNICIPALITY).json()
    assert again["cached"] is True and again["rows"] == body["rows"]
    assert again["keys_selected"] == body["keys_selected"]
    release = Release.from_document(body)  # the Python client reads the same fields
    assert (release.keys_selected, release.threshold, release.delta) == (
        len(MUNICIPALITIES),
        body["threshold"],
        body["delta"],
    )
    assert release.frame.height == len(MUNICIPALITIES)
    assert Preview.from_document(planned).threshold == planned["threshold"]


def test_a_public_grouping_says_nothing_of_key_selection(
    server: Service, admin: httpx.Client
) -> None:
    _register(server, admin)
    ana = analyst(server, admin, model="zcdp", amount=0.1, datasets=("roam",))
    body = ana.post("/v1/queries", json={**BY_MUNICIPALITY, "group_by": ["day"]}).json()
    assert not {"keys_selected", "threshold", "delta"} & body.keys()


def test_a_pure_budget_is_a_422_that_spends_nothing(server: Service, admin: httpx.Client) -> None:
    _register(server, admin)
    ana = analyst(server, admin, model="pure", amount=1.0, datasets=("roam",))
    query = {**BY_MUNICIPALITY, "privacy": {"epsilon": 0.5}}
    for path in ("/v1/queries/preview", "/v1/queries"):
        response = ana.post(path, json=query)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        detail = response.json()["detail"]
        assert "private keys" in detail and "zCDP budget" in detail
    assert ana.get("/v1/budgets").json()["items"][0]["spent"] == 0
    assert ledger(admin, kind="release") == []
